"""`metalens.analyses.posttrain` writes checkpoints that the circuits code loads back."""
import torch

import metalens
from metalens.analyses.posttrain import PosttrainConfig, posttrain
from metalens.circuits import list_checkpoints
from metalens.testing import tiny_model


def test_posttrain_saves_ordered_checkpoints_and_a_loadable_final_model(tmp_path):
    model = tiny_model("gemma3", seed=3)
    before = model.hf.model.layers[0].self_attn.o_proj.weight.detach().clone()
    cfg = PosttrainConfig(model="tiny", steps=4, save_every=2, n_eval=3, max_new_tokens=3, lr=1e-2)
    result = posttrain(tmp_path, cfg, verbose=False, model=model)
    steps = [c["step"] for c in result.curve]
    assert steps == [0, 2, 4]
    assert [p.name for p in list_checkpoints(tmp_path)][:3] == ["step-00000", "step-00002", "step-00004"]
    final = metalens.load_model(str(tmp_path / "final"), device="cpu")
    after = final.hf.model.layers[0].self_attn.o_proj.weight
    assert not torch.allclose(after, before)  # LoRA deltas were merged into the saved weights
    assert (tmp_path / "results.json").exists() and (tmp_path / "report.html").exists()
