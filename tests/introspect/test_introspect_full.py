"""Mode `full`: the learning-rate schedule, the sparse KL, the KL budget, and the model handed back."""
import json
import math

import pytest
import torch

from metalens.testing import tiny_model
from metalens.introspect import BinSpec, Question, generate_rollouts, load_rollouts
from metalens.introspect.heads.bins import prefix_labels
from metalens.introspect.heads.features import flatten
from metalens.introspect.heads.head import ReservedHead
from metalens.introspect.heads.full import (FullConfig, FullWeights, lr_at, measure_kl, sparse_kl, teacher_topk, train_full,
                                      weights_applied)

SPEC = BinSpec(edges=(1, 2, 4))


def _rows(model, out, n=12):
    """Rollout rows of a random model, with rewards planted (odd questions right) and their labels."""
    questions = [Question(f"Q: What is {i} + 1?\nA:", i + 1, level=1) for i in range(n)]
    generate_rollouts(model, questions, out, n_samples=2, max_new_tokens=8, seed=0, prefix="")
    rows = flatten(load_rollouts(out))
    for r in rows:
        r["reward"] = r["task_index"] % 2
    return rows, [prefix_labels(len(r["completion"]), r["reward"], SPEC)["bin"] for r in rows]


def test_learning_rate_warms_up_linearly_then_decays_by_cosine():
    lr, warmup, total, floor = 1.0, 4, 13, 0.1
    assert [lr_at(s, lr, warmup, total, floor) for s in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert lr_at(4, lr, warmup, total, floor) == pytest.approx(1.0)  # the cosine starts at the peak
    assert lr_at(8, lr, warmup, total, floor) == pytest.approx(0.55)  # halfway: (peak + floor) / 2
    assert lr_at(12, lr, warmup, total, floor) == pytest.approx(0.1)  # the last step reaches the floor
    assert lr_at(6, lr, warmup, total, floor) == pytest.approx(0.1 + 0.45 * (1 + math.cos(math.pi / 4)))
    assert lr_at(0, 2e-5, 0, 10) == pytest.approx(2e-5)  # no warmup


def test_sparse_kl_at_the_frozen_model_is_minus_log_of_its_top_k_mass():
    # Truncating the teacher to its top k makes the KL's minimum not the frozen model: at the frozen
    # model it equals -log(mass of the top k), which is why a flat (random) model drifts under it.
    logits = torch.tensor([[3.0, 2.0, 1.0, 0.0, -1.0]])
    values, ids = logits.topk(2)
    kl = sparse_kl(logits, ids, values.log_softmax(-1))
    mass = logits.softmax(-1)[0, :2].sum()
    assert kl.item() == pytest.approx(-math.log(mass.item()), rel=1e-5)
    full_values, full_ids = logits.topk(5)
    assert sparse_kl(logits, full_ids, full_values.log_softmax(-1)).item() == pytest.approx(0.0, abs=1e-6)


def test_kl_penalty_keeps_the_normal_vocabulary_within_budget_on_held_out_rollouts(tmp_path):
    model = tiny_model("gemma3", seed=1)
    rows, labels = _rows(model, tmp_path / "r")
    train, held = slice(0, 16), slice(16, None)
    kls, ces = {}, {}
    for coef in (0.0, 10.0):
        # top_k above the tiny vocabulary: the exact KL (a flat random model's top 32 hold little mass)
        config = FullConfig(steps=20, lr=3e-3, kl_coef=coef, top_k=1000, warmup=2, accum=2, batch_size=4)
        head, weights, history = train_full(model, rows[train], labels[train], SPEC, config)
        kls[coef] = measure_kl(model, weights, rows[held], head.token_ids)
        ces[coef] = history[-1]["ce"]
        assert history[-1]["ce"] < history[0]["ce"]  # the reserved slice learns in both runs
    assert kls[10.0] < 0.015  # the budget
    assert kls[10.0] < 0.5 * kls[0.0]  # without the penalty the model drifts more


def test_monitor_reads_the_cross_entropy_of_other_rows_before_and_during_training(tmp_path):
    model = tiny_model("gemma3", seed=1)
    rows, labels = _rows(model, tmp_path / "r")
    config = FullConfig(steps=6, lr=3e-3, kl_coef=0.0, warmup=1, accum=1, batch_size=4, monitor_every=4)
    _, _, history = train_full(model, rows[:16], labels[:16], SPEC, config, monitor=(rows[16:], labels[16:]))
    readings = {h["step"]: h["monitor_ce"] for h in history if "monitor_ce" in h}
    assert sorted(readings) == [-1, 3, 5]  # the start, every 4 steps, the last
    # the start is the untrained model's CE on the monitor rows, computed independently here
    from metalens.introspect.heads.features import final_hidden

    head = ReservedHead.from_model(model, SPEC)
    mon = rows[16:]
    hidden = torch.cat(final_hidden(model, [r["prompt_ids"] + r["completion"][:-1] for r in mon],
                                    [len(r["prompt_ids"]) - 1 for r in mon], [len(r["completion"]) for r in mon]))
    expected = torch.nn.functional.nll_loss(head.probs_from_hidden(model, hidden).log(), torch.cat(labels[16:]))
    assert readings[-1] == pytest.approx(expected.item(), rel=1e-4)
    assert readings[5] != readings[-1]  # the model it reads is the one being trained


def test_full_training_hands_the_model_back_and_its_weights_apply_inside_a_block(tmp_path):
    model = tiny_model("gemma3", seed=2)
    rows, labels = _rows(model, tmp_path / "r", n=6)
    batch = model.tokenize(["Q: 2 + 2?"])
    before = model.hf(**batch).logits
    head, weights, _ = train_full(model, rows, labels, SPEC, FullConfig(steps=3, lr=1e-2, warmup=1, accum=1))
    assert torch.equal(model.hf(**batch).logits, before)
    assert all(p.grad is None for p in model.hf.parameters())
    with weights_applied(model, weights):
        inside = model.hf(**batch).logits
        rows_now = model.hf.get_output_embeddings().weight[list(head.token_ids)]
        torch.testing.assert_close(rows_now.float(), head.weight)  # the head's rows are the trained ones
    assert not torch.allclose(inside, before)
    assert torch.equal(model.hf(**batch).logits, before)
    weights.save(tmp_path / "w")
    from metalens.introspect.heads.full import FullWeights

    with weights_applied(model, FullWeights.load(tmp_path / "w")):
        torch.testing.assert_close(model.hf(**batch).logits, inside)


def test_full_training_that_raises_restores_the_model(tmp_path, monkeypatch):
    from metalens.introspect.heads import full

    model = tiny_model("gemma3", seed=2)
    rows, labels = _rows(model, tmp_path / "r", n=4)
    before = {k: v.clone() for k, v in model.hf.state_dict().items()}

    def broken(model, *args):
        with torch.no_grad():
            next(model.hf.parameters()).add_(1.0)  # a half-done step
        raise RuntimeError("out of memory")

    monkeypatch.setattr(full, "_fit", broken)
    with pytest.raises(RuntimeError, match="out of memory"):
        train_full(model, rows, labels, SPEC, FullConfig(steps=2))
    assert all(torch.equal(before[k], v) for k, v in model.hf.state_dict().items())


def test_reserved_tokens_are_never_sampled_after_full_training(tmp_path):
    from metalens.introspect.rollouts.decode import sample

    model = tiny_model("gemma3", seed=3)
    rows, labels = _rows(model, tmp_path / "r", n=6)
    head, weights, _ = train_full(model, rows, labels, SPEC, FullConfig(steps=8, lr=3e-2, kl_coef=0.0, warmup=1,
                                                                       accum=1))
    prompt = model.tokenizer("Q: What is 3 + 1?\nA:")["input_ids"]
    with weights_applied(model, weights):
        drawn = sample(model, prompt, 16, max_new_tokens=12, temperature=1.0, head=head, stop_strings=(), seed=0)
        unmasked = model.hf(input_ids=torch.tensor([prompt])).logits[0].softmax(-1)[:, list(head.token_ids)]
    assert not {t for tokens in drawn.tokens for t in tokens} & set(head.token_ids)
    assert sum(len(t) for t in drawn.tokens) > 100  # many draws (a row ends early only at EOS)
    assert unmasked.sum(-1).max() > 0.05, "the test must be able to fail: unmasked, reserved ids carry mass"


def test_teacher_top_k_is_the_frozen_models_renormalised_top_tokens(tmp_path):
    model = tiny_model("gemma3", seed=4)
    rows, _ = _rows(model, tmp_path / "r", n=2)
    head_ids = range(10, 16)
    teacher = teacher_topk(model, rows[:1], head_ids, k=5)
    row = rows[0]
    logits = model.hf(input_ids=torch.tensor([row["prompt_ids"] + row["completion"][:-1]])).logits[0]
    logits = logits[len(row["prompt_ids"]) - 1 :]
    logits[:, 10:16] = float("-inf")
    values, ids = logits.topk(5)
    assert torch.equal(teacher.ids[0], ids)
    torch.testing.assert_close(teacher.logp[0], values.log_softmax(-1), atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(teacher.logp[0].exp().sum(-1), torch.ones(len(ids)))


def _planted_store(model, out, n):
    questions = [Question(f"Q: What is {i} + 1?\nA:", i + 1, level=1 + i % 2) for i in range(n)]
    generate_rollouts(model, questions, out, n_samples=2, max_new_tokens=5, seed=0, prefix="")
    plant_rewards(out)


def plant_rewards(out):
    """Rewrite a store's texts so every other question is answered right (a random model never is)."""
    from metalens.store import sha256

    records = load_rollouts(out)
    for r in records:  # texts, not rewards: load_rollouts re-grades
        r["texts"] = [f" The answer is {r['answer'] if r['task_index'] % 2 else -1}."] * len(r["texts"])
    (out / "rollouts.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    manifest = json.loads((out / "manifest.json").read_text())
    manifest["sha256"] = sha256(out / "rollouts.jsonl")
    (out / "manifest.json").write_text(json.dumps(manifest))


def test_cli_full_mode_trains_evaluates_and_samples_through_its_weights(tmp_path, monkeypatch):
    import metalens
    from metalens.cli import main

    model = tiny_model("gemma3", seed=5)
    monkeypatch.setattr(metalens, "load_model", lambda *a, **k: model)
    _planted_store(model, tmp_path / "r", n=8)
    batch = model.tokenize(["Q: 2 + 2?"])
    before = model.hf(**batch).logits
    out = tmp_path / "full"
    assert main(["introspect", "train", "--out", str(out), "--rollouts", str(tmp_path / "r"), "--mode", "full",
                 "--steps", "4", "--lr", "1e-3", "--kl-coef", "5", "--warmup", "1", "--accum", "2",
                 "--batch-size", "2", "--head-steps", "20", "--test-fraction", "0.5"]) == 0
    trained = json.loads((out / "results.json").read_text())
    assert trained["config"]["train_steps"] == 4 and trained["config"]["kl_coef"] == 5.0
    # the named store's own sampling, not the config's unused defaults (6 samples, 40 tokens)
    assert trained["rollout_settings"]["n_samples"] == 2 and trained["rollout_settings"]["max_new_tokens"] == 5
    assert [h["lr"] for h in trained["full_history"] if h["step"] >= 0] == [lr_at(s, 1e-3, 1, 4) for s in range(4)]
    assert trained["kl_normal_vocab_heldout"] > 0 and (out / "weights" / "weights.safetensors").exists()
    assert "head mode (full init)" in trained["heldout_all_positions"]
    assert main(["introspect", "eval", "--train", str(out), "--out", str(out / "eval"), "--no-verbal",
                 "--fractions", "0", "1", "--n-shuffles", "1"]) == 0
    assert main(["introspect", "sample", "--train", str(out), "--out", str(out / "sample"),
                 "--alphas", "0", "0.01"]) == 0
    evaluation = json.loads((out / "eval" / "results.json").read_text())
    assert evaluation["all_positions"]["head"]["auroc"] == pytest.approx(
        trained["heldout_all_positions"]["head"]["auroc"])  # the same trained states
    assert torch.equal(model.hf(**batch).logits, before)  # weights removed after train, eval and sample
    from metalens.introspect import EvalConfig, run_eval

    with pytest.raises(ValueError, match="full head.*not be out of fold"):
        run_eval(model, EvalConfig(out, verbal=False, cv=2), progress=False)

    # compare: a head-mode head on the same store and split, paired with the full head
    common = ["--rollouts", str(tmp_path / "r"), "--steps", "20", "--test-fraction", "0.5"]
    assert main(["introspect", "train", "--out", str(tmp_path / "h"), *common]) == 0
    assert main(["introspect", "compare", "--heads", str(tmp_path / "h" / "head"), str(out / "head"),
                 str(tmp_path / "h" / "head"), "--out", str(tmp_path / "cmp"), "--n-boot", "200"]) == 0
    cmp = json.loads((tmp_path / "cmp" / "results.json").read_text())
    plain = json.loads((tmp_path / "h" / "results.json").read_text())
    full_score, head_score = cmp["scores"][str(out / "head")], cmp["scores"][str(tmp_path / "h" / "head")]
    assert full_score["auroc"] == pytest.approx(trained["heldout_all_positions"]["head"]["auroc"])  # through weights
    assert head_score["auroc"] == pytest.approx(plain["heldout_all_positions"]["head"]["auroc"])
    to_full, to_self = cmp["differences"]
    assert to_full["auroc_diff"] == pytest.approx(full_score["auroc"] - head_score["auroc"])
    assert to_self["auroc_diff"] == 0  # paired: identical heads never differ
    # a handful of held-out units: no bootstrap bounds nor bootstrap p, the reason beside them
    # (metalens.stats.MIN_BOOTSTRAP_UNITS)
    assert to_self["ci95"] == [None, None] and to_self["p_boot"] is None
    assert to_self["ci_method"].startswith("not computed")
    assert cmp["n_comparisons"] == 2 and torch.equal(model.hf(**batch).logits, before)
    assert main(["introspect", "train", "--out", str(tmp_path / "h2"), *common[:-1], "0.3"]) == 0
    from metalens.introspect import CompareConfig, run_compare

    with pytest.raises(ValueError, match="same rollouts and split"):
        run_compare(model, CompareConfig([tmp_path / "h", tmp_path / "h2"]))


def test_drift_of_the_frozen_model_is_none_and_a_trained_one_costs_likelihood(tmp_path):
    from metalens.introspect.heads.full import measure_drift

    model = tiny_model("gemma3", seed=1)
    rows, labels = _rows(model, tmp_path / "r")
    head, weights, _ = train_full(model, rows[:16], labels[:16], SPEC,
                                  FullConfig(steps=10, lr=1e-2, kl_coef=0.0, warmup=1, accum=1, batch_size=4))
    trained = measure_drift(model, weights, rows[16:], head.token_ids)
    frozen = FullWeights({n: p.detach().clone() for n, p in model.hf.named_parameters()})
    same = measure_drift(model, frozen, rows[16:], head.token_ids)
    assert same["kl"] == pytest.approx(0.0, abs=1e-6) and same["top1_agreement"] == 1.0
    assert same["nll_trained"] == pytest.approx(same["nll_frozen"], abs=1e-6)
    # the frozen model sampled these tokens, so their NLL under it is what sampling saw; the
    # untethered (KL 0) trained model gives them less probability and moves its argmax
    assert trained["nll_frozen"] == pytest.approx(same["nll_frozen"], abs=1e-6)
    assert trained["kl"] > 0 and trained["nll_trained"] > trained["nll_frozen"]
    assert trained["n_positions"] == sum(len(r["completion"]) for r in rows[16:])


def test_lr_probe_steps_from_the_head_fit_on_training_questions_only(tmp_path, monkeypatch):
    import sys

    import metalens
    from metalens.cli import main
    from tests.scripts import load_result_script

    model = tiny_model("gemma3", seed=5)
    monkeypatch.setattr(metalens, "load_model", lambda *a, **k: model)
    _planted_store(model, tmp_path / "r", n=8)
    assert main(["introspect", "train", "--out", str(tmp_path / "h"), "--rollouts", str(tmp_path / "r"),
                 "--steps", "20", "--test-fraction", "0.5"]) == 0
    probe = load_result_script("ziprc-gemma", "full_lr_probe")
    before = {n: p.detach().clone() for n, p in model.hf.named_parameters()}
    monkeypatch.setattr(sys, "argv", ["probe", "--train", str(tmp_path / "h"), "--lrs", "0", "0.1",
                                      "--batch-size", "2", "--out", str(tmp_path / "probe.json")])
    probe.main()
    out = json.loads((tmp_path / "probe.json").read_text())
    zero, big = out["steps"]
    assert zero["ce_a"] == pytest.approx(out["ce_a_start"], rel=1e-6)  # a step of lr 0 moves nothing
    assert zero["ce_b"] == pytest.approx(out["ce_b_start"], rel=1e-6)
    assert abs(big["ce_a"] - out["ce_a_start"]) > 1e-3  # and each lr starts again from the head fit
    assert all(torch.equal(p, before[n]) for n, p in model.hf.named_parameters())  # the model handed back


def test_the_returned_head_holds_the_trained_rows_not_the_restored_originals(tmp_path):
    # On a CPU fp32 model a row slice taken with .float().cpu() is a view of the embedding; restoring
    # the original parameters after training would then overwrite the returned head with the
    # untrained <unused> rows. At lr 0 the returned rows must be exactly the init head's.
    model = tiny_model("gemma3", seed=1)
    rows, labels = _rows(model, tmp_path / "r")
    init = ReservedHead.from_model(model, SPEC)
    init.weight = torch.randn_like(init.weight)
    untrained = ReservedHead.from_model(model, SPEC).weight
    config = FullConfig(steps=2, lr=0.0, kl_coef=0.0, warmup=1, accum=1, batch_size=4)
    head, weights, _ = train_full(model, rows[:8], labels[:8], SPEC, config, init=init)
    assert torch.equal(head.weight, init.weight) and not torch.equal(head.weight, untrained)
    embedding = weights.tensors[next(n for n in weights.tensors if "embed" in n)]
    assert torch.equal(embedding[head.token_ids.start : head.token_ids.stop], head.weight)  # the saved weights agree
    assert torch.equal(ReservedHead.from_model(model, SPEC).weight, untrained)  # the model handed back
