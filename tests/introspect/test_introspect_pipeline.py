"""LoRA mode with its KL penalty, and the CLI end to end on a tiny model."""
import json

import torch

from metalens.testing import tiny_model
from probes.introspect import BinSpec, Task, generate_rollouts, load_rollouts


def _rollouts(model, out, n=6):
    tasks = [Task(f"Q: What is {i} + 1?\nA:", i + 1, level=1) for i in range(n)]
    generate_rollouts(model, tasks, out, n_samples=2, max_new_tokens=5, seed=0, prefix="")
    records = load_rollouts(out)
    for r in records:  # plant rewards: odd tasks correct, so both classes exist
        r["rewards"] = [r["task_index"] % 2] * len(r["rewards"])
    return records


def test_lora_reports_kl_and_leaves_the_model_as_given(tmp_path):
    from probes.introspect.lora import measure_kl, train_lora

    model = tiny_model("gemma3", seed=1)  # its own copy: peft edits modules in place
    records = _rollouts(model, tmp_path / "r")
    batch = model.tokenize(["Q: 2 + 2?"])
    before = model.hf(**batch).logits
    head, peft_model, history = train_lora(model, records, BinSpec(edges=(1, 2, 4)), steps=15, lr=5e-3)
    kl = measure_kl(model, peft_model, records, head)
    assert kl > 0 and history[-1]["ce"] < history[0]["ce"]
    with peft_model.disable_adapter():
        assert measure_kl(model, peft_model, records, head) == 0.0
    peft_model.unload()
    assert torch.equal(model.hf(**batch).logits, before)


def test_lora_kl_penalty_keeps_the_model_closer(tmp_path):
    from probes.introspect.lora import measure_kl, train_lora

    kls = []
    for coef in (0.0, 50.0):
        model = tiny_model("gemma3", seed=1)
        records = _rollouts(model, tmp_path / f"r{coef}")
        head, peft_model, _ = train_lora(model, records, BinSpec(edges=(1, 2, 4)), steps=15, lr=2e-2, kl_coef=coef)
        kls.append(measure_kl(model, peft_model, records, head))
    assert kls[1] < kls[0]


def test_cli_train_eval_sample_write_results_and_reports(tmp_path, monkeypatch):
    import metalens
    from metalens.cli import main

    model = tiny_model("gemma3", seed=2)
    monkeypatch.setattr(metalens, "load_model", lambda *a, **k: model)
    _rollouts(model, tmp_path / "r", n=8)
    # overwrite with planted rewards so the split has both classes, keeping the store valid
    from probes.introspect.rollouts import _sha256
    recs = [json.loads(line) for line in (tmp_path / "r" / "rollouts.jsonl").read_text().splitlines()]
    for r in recs:
        r["rewards"] = [r["task_index"] % 2] * 2
    (tmp_path / "r" / "rollouts.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    manifest = json.loads((tmp_path / "r" / "manifest.json").read_text())
    manifest["sha256"] = _sha256(tmp_path / "r" / "rollouts.jsonl")
    (tmp_path / "r" / "manifest.json").write_text(json.dumps(manifest))
    out = tmp_path / "run"
    assert main(["introspect", "train", "--out", str(out), "--rollouts", str(tmp_path / "r"), "--steps", "50",
                 "--test-fraction", "0.5"]) == 0
    assert main(["introspect", "eval", "--head", str(out / "head"), "--out", str(out / "eval"),
                 "--fractions", "0", "1"]) == 0
    assert main(["introspect", "sample", "--head", str(out / "head"), "--out", str(out / "sample"),
                 "--alphas", "0", "0.01"]) == 0
    for sub in ("", "eval", "sample"):
        assert (out / sub / "report.html").stat().st_size > 1000
    evaluation = json.loads((out / "eval" / "results.json").read_text())
    assert [f["fraction"] for f in evaluation["fractions"]] == [0.0, 1.0]
    assert {"head", "probe", "shuffled", "verbal"} <= set(evaluation["fractions"][0])
    sampling = json.loads((out / "sample" / "results.json").read_text())
    assert len(sampling["adaptive"]) == 4 and sampling["pool_size"] == 2
