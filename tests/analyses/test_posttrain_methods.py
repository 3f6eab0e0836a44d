"""`run_posttrain` on every block, by SFT or GRPO, LoRA or full, and resumable from its checkpoints."""
import pytest
import numpy as np
import torch

import metalens
import metalens.analyses.grpo as grpo_module
from metalens import power
from metalens.analyses.posttrain import PosttrainConfig, _make_trainable, run_posttrain
from metalens.analyses.trainer_state import PICKLE_FILE, load_trainer_state, save_trainer_state
from metalens.checkpoints import read_checkpoint_meta
from metalens.testing import tiny_model

SMALL = dict(steps=4, save_every=3, batch_size=2, n_eval=2, max_new_tokens=3, lr=1e-2, heldout_seed=77)


@pytest.fixture(scope="module")
def base_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("base")
    tiny = tiny_model("gemma3", seed=3)
    tiny.hf.save_pretrained(root)
    tiny.tokenizer.save_pretrained(root)
    return root


@pytest.fixture
def planted_reward(monkeypatch):
    """A reward the tiny random model earns about half the time (the grader would give it 0 every time)."""
    monkeypatch.setattr(grpo_module, "default_reward", lambda p, text: float(len(text) > 0 and ord(text[0]) % 2 == 0))


def _fresh(base_dir):
    return metalens.load_model(str(base_dir), device="cpu")


def _weights(model):
    return {k: v.detach().clone() for k, v in model.hf.state_dict().items()}


def test_lora_on_all_blocks_trains_every_block_and_the_default_only_the_last(base_dir):
    for layers, trained in ((None, {0, 1, 2}), (1, {2})):
        _, params = _make_trainable(_fresh(base_dir), PosttrainConfig(lora_layers=layers))
        assert {int(n.split("layers.")[1].split(".")[0]) for n in params} == trained
        assert all("lora_" in n for n in params)


def test_full_fine_tuning_freezes_only_the_embedding(base_dir):
    model = _fresh(base_dir)
    _, params = _make_trainable(model, PosttrainConfig(full=True, lora_layers=None))
    embed = model.hf.get_input_embeddings().weight
    assert not embed.requires_grad and all(p is not embed for p in params.values())
    assert any(n.endswith("layers.0.self_attn.q_proj.weight") for n in params)


@pytest.mark.parametrize("method,full", [("sft", False), ("grpo", False), ("grpo", True)])
def test_a_resumed_run_ends_with_the_weights_of_an_uninterrupted_run(base_dir, tmp_path, planted_reward, method, full):
    cfg = PosttrainConfig(**SMALL, method=method, full=full, lora_layers=None, group_size=4, sample_tokens=4,
                          merge_final=False)
    whole = _fresh(base_dir)
    run_posttrain(whole, cfg, out=tmp_path / "whole", progress=False)
    stopped = _fresh(base_dir)
    partial = run_posttrain(stopped, cfg, out=tmp_path / "split", progress=False, stop_after=2)
    assert not partial.finished and [c["step"] for c in partial.curve] == [0, 2]
    resumed = _fresh(base_dir)
    result = run_posttrain(resumed, cfg, out=tmp_path / "split", progress=False)
    assert result.finished and result.resumed_from == 2
    diff = np.asarray(result.accuracy_after["correct"], float) - np.asarray(result.accuracy_before["correct"], float)
    assert result.change["mde"] == power.paired_mde(diff)  # the null's sensitivity beside its interval
    assert [c["step"] for c in result.curve] == [0, 2, 3, 4]
    want, got, untrained = _weights(whole), _weights(resumed), _weights(_fresh(base_dir))
    assert any(not torch.equal(want[k], untrained[k]) for k in want), "training should change the weights"
    for k in want:
        torch.testing.assert_close(got[k], want[k], rtol=1e-5, atol=1e-6)
    if method == "grpo":
        assert "reward" in result.curve[-1] and 0 <= result.curve[-1]["reward"] <= 1
    assert read_checkpoint_meta(tmp_path / "split" / "step-00004")["config"]["method"] == method


def test_resuming_without_the_optimizer_state_would_not_match(base_dir, tmp_path):
    """The resumption test can fail: restarting from the saved weights with a fresh optimizer ends elsewhere."""
    cfg = PosttrainConfig(**SMALL, lora_layers=None, merge_final=False)
    whole = _fresh(base_dir)
    run_posttrain(whole, cfg, out=tmp_path / "whole", progress=False)
    run_posttrain(_fresh(base_dir), cfg, out=tmp_path / "split", progress=False, stop_after=2)
    checkpoint = tmp_path / "split" / "step-00002"
    state = load_trainer_state(checkpoint)
    fresh_opt = torch.optim.AdamW([torch.nn.Parameter(v.clone()) for v in state["params"].values()], lr=cfg.lr)
    state["optimizer"] = fresh_opt.state_dict()
    save_trainer_state(checkpoint, state)
    resumed = _fresh(base_dir)
    run_posttrain(resumed, cfg, out=tmp_path / "split", progress=False)
    want, got = _weights(whole), _weights(resumed)
    assert any(not torch.allclose(got[k], want[k], rtol=1e-5, atol=1e-6) for k in want)


def test_a_resumed_run_with_another_config_is_refused_naming_the_keys(base_dir, tmp_path):
    cfg = PosttrainConfig(**SMALL, merge_final=False, checkpoint_accuracy=False)
    run_posttrain(_fresh(base_dir), cfg, out=tmp_path, progress=False, stop_after=1)
    other = PosttrainConfig(**{**SMALL, "lr": 0.5}, method="grpo", merge_final=False, checkpoint_accuracy=False)
    with pytest.raises(ValueError, match=r"differs in lr 0\.01 -> 0\.5, method 'sft' -> 'grpo'"):
        run_posttrain(_fresh(base_dir), other, out=tmp_path, progress=False)
    # merge_final does not touch the training: changing it resumes
    resumed = run_posttrain(_fresh(base_dir), PosttrainConfig(**SMALL, checkpoint_accuracy=False), out=tmp_path,
                            progress=False, stop_after=2)
    assert resumed.resumed_from == 1


class _Payload:
    """Unpickling this writes a file: what a crafted checkpoint from someone else could do."""

    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        from pathlib import Path

        return Path.write_text, (Path(self.target), "payload ran")


def test_a_pickle_trainer_state_is_refused_without_running_it(base_dir, tmp_path):
    cfg = PosttrainConfig(**SMALL, merge_final=False, checkpoint_accuracy=False)
    run_posttrain(_fresh(base_dir), cfg, out=tmp_path / "run", progress=False, stop_after=1)
    latest = tmp_path / "run" / "step-00001"
    for name in ("trainer-state.json", "trainer-state.safetensors"):
        (latest / name).unlink()
    witness = tmp_path / "witness.txt"
    torch.save({"step": 1, "payload": _Payload(witness)}, latest / PICKLE_FILE)
    with pytest.raises(ValueError, match=r"trainer-state\.pt .*no longer reads pickles"):
        run_posttrain(_fresh(base_dir), cfg, out=tmp_path / "run", progress=False)
    assert not witness.exists()


def test_the_trainer_state_is_safetensors_and_json_only(base_dir, tmp_path):
    run_posttrain(_fresh(base_dir), PosttrainConfig(**SMALL, merge_final=False, checkpoint_accuracy=False),
                  out=tmp_path, progress=False, stop_after=1)
    assert sorted(p.name for p in (tmp_path / "step-00001").glob("trainer-state*")) == [
        "trainer-state.json", "trainer-state.safetensors"]
    assert not list((tmp_path / "step-00000").glob("trainer-state*"))  # only the latest checkpoint keeps one


def test_an_incomplete_run_is_replaced_by_another_config(base_dir, tmp_path, capsys, monkeypatch):
    import metalens.analyses.posttrain as posttrain_module

    def fail(*args, **kwargs):
        raise RuntimeError("the first step failed")

    cfg = PosttrainConfig(**SMALL, merge_final=False, checkpoint_accuracy=False)
    with monkeypatch.context() as patch:
        patch.setattr(posttrain_module, "sft_step", fail)
        with pytest.raises(RuntimeError):
            run_posttrain(_fresh(base_dir), cfg, out=tmp_path, progress=False)
    assert [p.name for p in tmp_path.glob("step-*")] == ["step-00000"]
    other = PosttrainConfig(**{**SMALL, "batch_size": 1}, merge_final=False, checkpoint_accuracy=False)
    result = run_posttrain(_fresh(base_dir), other, out=tmp_path, progress=True, stop_after=1)
    assert result.resumed_from is None and [c["step"] for c in result.curve] == [0, 1]
    assert "incomplete run" in capsys.readouterr().out


@pytest.mark.parametrize("field,value", [("batch_size", 0), ("steps", -1), ("lr", float("nan")), ("lr", 0.0),
                                         ("n_eval", 0), ("temperature", float("inf")), ("levels", (9,))])
def test_a_bad_config_is_refused_before_anything_is_written(field, value):
    with pytest.raises(ValueError, match=field):
        PosttrainConfig(**{**SMALL, field: value})


def test_checkpoints_carry_heldout_accuracy_with_wilson_intervals(base_dir, tmp_path):
    result = run_posttrain(_fresh(base_dir), PosttrainConfig(**SMALL, merge_final=False), out=tmp_path,
                           progress=False, stop_after=1)
    for row in result.curve:
        assert 0 <= row["low"] <= row["accuracy"] + 1e-12 and row["accuracy"] <= row["high"] <= 1
    assert read_checkpoint_meta(tmp_path / "step-00001")["high"] == result.curve[-1]["high"]


def test_posttrain_verb_takes_the_method_and_grpo_options():
    from metalens.cli import build_parser

    args = build_parser().parse_args(["posttrain", "--out", "o", "--method", "grpo", "--train-blocks", "all", "--full",
                                      "--group-size", "6", "--kl-coef", "0.1", "--temperature", "0.7",
                                      "--steps", "20", "--save-every", "2", "--stop-after", "4"])
    assert (args.method, args.train_blocks, args.full, args.group_size, args.kl_coef, args.temperature) == (
        "grpo", None, True, 6, 0.1, 0.7)
    defaults = build_parser().parse_args(["posttrain", "--out", "o"])
    assert (defaults.method, defaults.train_blocks, defaults.full) == ("sft", 6, False)
    assert build_parser().parse_args(["posttrain", "--out", "o", "--train-blocks", "2"]).train_blocks == 2
