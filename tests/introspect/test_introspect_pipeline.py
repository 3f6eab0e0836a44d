"""LoRA mode with its KL penalty, and the CLI end to end on a tiny model."""
import json

import pytest
import torch

from metalens.testing import tiny_model
from metalens.introspect import BinSpec, Question, generate_rollouts, load_rollouts


def _rollouts(model, out, n=6):
    questions = [Question(f"Q: What is {i} + 1?\nA:", i + 1, level=1) for i in range(n)]
    generate_rollouts(model, questions, out, n_samples=2, max_new_tokens=5, seed=0, prefix="")
    records = load_rollouts(out)
    for r in records:  # plant rewards: odd tasks correct, so both classes exist
        r["rewards"] = [r["task_index"] % 2] * len(r["rewards"])
    return records


def _planted_store(model, out, n):
    """A valid rollout store whose texts are planted (odd tasks answered right), so both classes exist.

    Texts, not rewards: `load_rollouts` re-grades the stored texts.
    """
    from metalens.store import sha256 as sha256_text

    records = _rollouts(model, out, n)
    for r in records:
        r["texts"] = [f" The answer is {r['answer'] if r['task_index'] % 2 else -1}."] * len(r["texts"])
    (out / "rollouts.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    manifest = json.loads((out / "manifest.json").read_text())
    manifest["sha256"] = sha256_text(out / "rollouts.jsonl")
    (out / "manifest.json").write_text(json.dumps(manifest))


def test_lora_reports_kl_and_leaves_the_model_as_given(tmp_path):
    from metalens.introspect.heads.lora import measure_kl, train_lora

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


def test_lora_drift_reads_the_sampled_tokens_likelihood_like_full_mode(tmp_path):
    # lora drops the reserved columns from its log-probabilities, full mode sets them to -inf: the
    # sampled tokens' NLL under the frozen model must come out the same through both
    from metalens.introspect.heads.features import flatten
    from metalens.introspect.heads.full import FullWeights
    from metalens.introspect.heads.full import measure_drift as full_drift
    from metalens.introspect.heads.head import ReservedHead
    from metalens.introspect.heads.lora import measure_drift, train_lora

    model = tiny_model("gemma3", seed=1)
    records = _rollouts(model, tmp_path / "r")
    spec = BinSpec(edges=(1, 2, 4))
    reserved = ReservedHead.from_model(model, spec).token_ids
    frozen = full_drift(model, FullWeights({n: p.detach().clone() for n, p in model.hf.named_parameters()}),
                        flatten(records), reserved)
    head, peft_model, _ = train_lora(model, records, spec, steps=15, lr=5e-3)
    assert head.token_ids == reserved
    drift = measure_drift(model, peft_model, records, head)
    peft_model.unload()
    assert drift["nll_frozen"] == pytest.approx(frozen["nll_frozen"], rel=1e-5)
    assert drift["kl"] > 0 and drift["n_scored"] == frozen["n_scored"] < drift["n_positions"]  # reserved sampled
    assert drift["nll_trained"] != pytest.approx(drift["nll_frozen"], rel=1e-4)


def test_lora_kl_penalty_keeps_the_model_closer(tmp_path):
    from metalens.introspect.heads.lora import measure_kl, train_lora

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
    _planted_store(model, tmp_path / "r", n=8)
    out = tmp_path / "run"
    assert main(["introspect", "train", "--out", str(out), "--rollouts", str(tmp_path / "r"), "--steps", "50",
                 "--test-fraction", "0.5"]) == 0
    assert main(["introspect", "eval", "--train", str(out), "--out", str(out / "eval"),
                 "--fractions", "0", "1", "--cv", "2", "--n-shuffles", "2"]) == 0
    assert main(["introspect", "sample", "--train", str(out), "--out", str(out / "sample"),
                 "--alphas", "0", "0.01", "--live", "2", "--live-alphas", "0.001", "--cv", "2"]) == 0
    for sub in ("", "eval", "sample"):
        assert (out / sub / "report.html").stat().st_size > 1000
    evaluation = json.loads((out / "eval" / "results.json").read_text())
    assert [f["fraction"] for f in evaluation["fractions"]] == [0.0, 1.0]
    assert {"head", "probe", "shuffled", "verbal"} <= set(evaluation["fractions"][0])
    assert evaluation["cv"]["k"] == 2 and len(evaluation["cv"]["fractions"]) == 2
    assert len(evaluation["all_positions"]["shuffled"]["aurocs"]) == 2
    assert "head_vs_shuffled" in evaluation["cv"]["all_positions"]
    sampling = json.loads((out / "sample" / "results.json").read_text())
    assert len(sampling["adaptive"]) == 4 and sampling["pool_size"] == 2
    assert sampling["cv"]["n_tasks"] == 8 > sampling["n_tasks"]  # every problem, not just the held-out half
    live = sampling["live"][0]
    assert live["n_problems"] == 2 and 0 < live["tokens"] <= 2 * 5 and live["decode_steps"] <= 2 * 5


def test_lora_head_is_evaluated_on_the_adapted_model(tmp_path, monkeypatch):
    import metalens
    from metalens.cli import main

    model = tiny_model("gemma3", seed=3)
    monkeypatch.setattr(metalens, "load_model", lambda *a, **k: model)
    _planted_store(model, tmp_path / "r", n=6)
    batch = model.tokenize(["Q: 2 + 2?"])
    before = model.hf(**batch).logits
    out = tmp_path / "lora"
    assert main(["introspect", "train", "--out", str(out), "--rollouts", str(tmp_path / "r"), "--mode", "lora",
                 "--steps", "4", "--head-steps", "20", "--test-fraction", "0.5"]) == 0
    assert (out / "adapter").is_dir() and (out / "positions_lora.safetensors").exists()
    trained = json.loads((out / "results.json").read_text())
    assert trained["kl_normal_vocab_heldout"] > 0
    assert main(["introspect", "eval", "--train", str(out), "--out", str(out / "eval"), "--no-verbal",
                 "--fractions", "0", "1"]) == 0
    # the base model's states differ from the adapted ones the head was trained on
    from safetensors.torch import load_file
    from metalens.introspect import BinSpec, rollout_positions

    from metalens.introspect.heads.lora import adapter_applied

    adapted = load_file(out / "positions_lora.safetensors")["hidden"]
    base = rollout_positions(model, load_rollouts(tmp_path / "r"), BinSpec()).hidden
    assert not torch.allclose(adapted, base)
    with adapter_applied(model, out / "adapter"):  # the saved adapter is the one the states came from
        torch.testing.assert_close(rollout_positions(model, load_rollouts(tmp_path / "r"), BinSpec()).hidden, adapted)
    assert torch.equal(model.hf(**batch).logits, before)  # adapters removed after train and eval


def test_cross_validation_of_a_lora_head_is_refused(tmp_path):
    from metalens.introspect import EvalConfig, SampleConfig, TrainConfig, run_eval, run_sample, run_train

    model = tiny_model("gemma3", seed=3)
    _planted_store(model, tmp_path / "r", n=6)
    run_train(model, TrainConfig(rollouts=tmp_path / "r", mode="lora", train_steps=2, steps=10, test_fraction=0.5),
              out=tmp_path / "lora", progress=False)
    with pytest.raises(ValueError, match="lora head.*not be out of fold"):
        run_eval(model, EvalConfig(tmp_path / "lora", verbal=False, cv=2, n_shuffles=1), progress=False)
    with pytest.raises(ValueError, match="lora head.*not be out of fold"):
        run_sample(model, SampleConfig(tmp_path / "lora", alphas=(0.0,), cv=2), progress=False)


def test_train_lora_removes_its_adapters_when_training_fails(tmp_path, monkeypatch):
    from metalens.introspect.heads import lora

    model = tiny_model("gemma3", seed=1)
    records = _rollouts(model, tmp_path / "r")
    names = {n for n, _ in model.hf.named_modules()}

    def broken(*args, **kwargs):
        raise RuntimeError("out of memory")

    monkeypatch.setattr(lora, "_batch", broken)
    with pytest.raises(RuntimeError, match="out of memory"):
        lora.train_lora(model, records, BinSpec(edges=(1, 2, 4)), steps=2)
    assert {n for n, _ in model.hf.named_modules()} == names  # no lora_A / lora_B left behind


def test_hidden_state_cache_is_refused_for_other_rollouts_of_the_same_length(tmp_path):
    from metalens.introspect.heads import cached_positions

    model = tiny_model("gemma3", seed=2)
    records = _rollouts(model, tmp_path / "r", n=3)
    spec = BinSpec(edges=(1, 2, 4))
    cache = tmp_path / "positions.safetensors"
    first = cached_positions(model, records, spec, cache, progress=False)
    other = json.loads(json.dumps(records))
    completion = other[0]["completions"][0]
    completion[0] = (completion[0] + 1) % model.d_vocab  # same token count, another token
    again = cached_positions(model, other, spec, cache, progress=False)
    assert len(again.bin) == len(first.bin) and not torch.equal(again.hidden, first.hidden)
    other[1]["rewards"] = [1 - x for x in other[1]["rewards"]]  # a re-graded store: labels change
    assert not torch.equal(cached_positions(model, other, spec, cache, progress=False).reward, again.reward)


def test_train_refuses_rollouts_made_with_other_settings(tmp_path):
    from metalens.introspect import TrainConfig, run_train

    model = tiny_model("gemma3", seed=4)
    questions = [Question(f"Q: What is {i} + 1?\nA:", i + 1, level=1) for i in range(4)]
    out = tmp_path / "run"
    _rollouts(model, out / "rollouts", n=4)  # a finished store where train looks by default, T = 1.0
    with pytest.raises(ValueError, match="other settings"):
        run_train(model, TrainConfig(questions=questions, n_samples=2, max_new_tokens=5, temperature=0.3), out=out)


def test_workflows_run_in_memory_and_their_results_save_and_load(tmp_path):
    from metalens.introspect import EvalConfig, SampleConfig, TrainConfig, run_eval, run_sample, run_train
    from metalens.introspect.workflows.eval import EvalResult
    from metalens.introspect.workflows.sample import SampleResult
    from metalens.introspect.workflows.train import TrainResult

    model = tiny_model("gemma3", seed=2)
    _planted_store(model, tmp_path / "r", n=8)
    with pytest.raises(ValueError, match="directory for the rollouts"):
        run_train(model, TrainConfig())
    with pytest.raises(ValueError, match="Unknown mode"):
        TrainConfig(mode="everything")
    trained = run_train(model, TrainConfig(rollouts=tmp_path / "r", steps=30, test_fraction=0.5), progress=False)
    assert not any(tmp_path.glob("**/results.json"))  # out=None writes nothing
    assert trained.n_tasks == 8 and len(trained.test_tasks) == 4 and trained.solve_rates == {1: 0.5}
    assert 0 <= trained.heldout_auroc <= 1 and trained.head.metadata["test_tasks"] == trained.test_tasks
    trained.save(tmp_path / "train")
    loaded = TrainResult.load(tmp_path / "train")
    assert loaded.solve_rates == trained.solve_rates and loaded.heldout_auroc == trained.heldout_auroc
    assert torch.equal(loaded.head.weight, trained.head.weight) and loaded.config == trained.config
    evaluation = run_eval(model, EvalConfig(tmp_path / "train", fractions=(0.0, 1.0), verbal=False,
                                            n_shuffles=1), progress=False)
    assert [f["fraction"] for f in evaluation.fractions] == [0.0, 1.0] and evaluation.cv is None
    assert evaluation.heldout_auroc == pytest.approx(trained.heldout_auroc)  # the same head on the same states
    evaluation.save(tmp_path / "eval")
    assert EvalResult.load(tmp_path / "eval").all_positions == json.loads(
        (tmp_path / "eval" / "results.json").read_text())["all_positions"]
    sampling = run_sample(model, SampleConfig(tmp_path / "train", alphas=(0.0, 0.01)), out=tmp_path / "s",
                          progress=False)
    again = SampleResult.load(tmp_path / "s")
    assert again.config == sampling.config and again.config.alphas == (0.0, 0.01)
    assert again.pool_size == sampling.pool_size == 2 and len(again.adaptive) == 4


def test_demo_runs_the_three_workflows_and_returns_a_headline(tmp_path, monkeypatch):
    from metalens.introspect import demo
    from metalens.introspect.rollouts import store as rollouts

    model = tiny_model("gemma3", seed=6)
    # A random model never answers right: plant rewards by question (even answers correct).
    monkeypatch.setattr(rollouts, "grade", lambda question, completion: int(question.answer % 2 == 0))
    out = demo(model, tmp_path / "demo", n_questions=8, n_samples=2)
    assert out["headline"].startswith("solve rate ") and "AUROC" in out["headline"] and "\n" not in out["headline"]
    assert f"{out['heldout_auroc']:.2f}" in out["headline"] and 0 < out["solve_rate"] < 1
    for sub in ("", "eval", "sample"):
        assert (tmp_path / "demo" / sub / "report.html").exists()
