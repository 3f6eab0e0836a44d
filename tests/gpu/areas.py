"""Each area's quick path on a target device/dtype compared with the CPU float32 result on the same inputs.

A check builds the same tiny random model twice (same seed: weights drawn on the CPU, then moved),
runs one area's quick path on both, and returns `Row`s: the largest difference and the tolerance it
must stay under. Tolerances (stated once, here):
- float32 on another device differs from the CPU only by summation order: relative 1e-3
  (attribution gradients 1e-2).
- bfloat16 keeps 8 bits of mantissa (relative rounding 2^-8 = 0.4 % per value), compounded over a
  few blocks: relative 5e-2 for activations and directions, 0.15 for gradients and trained heads.
- Greedy tokens are checked teacher-forced: each token the device chose must be within `NATS` of the
  CPU model's best next-token log-probability in the same context (no exact-match demand where a
  near-tie may flip in bfloat16).
Used by tests/gpu (cuda vs cpu), tests/core/test_gpu_check.py (cpu bfloat16 vs cpu float32, so the
code runs everywhere) and scripts/gpu_check.py.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import torch

import metalens
from metalens import sites
from metalens.testing import tiny_model

REL = {torch.float32: 1e-3, torch.bfloat16: 5e-2}
REL_GRAD = {torch.float32: 1e-2, torch.bfloat16: 0.15}
NATS = {torch.float32: 1e-3, torch.bfloat16: 0.1}
TEXTS = ["The cat sat on the mat.", "Q: What is 2 + 3?\nA: 5", "A longer sentence about the sea and ships.", "hi"]


@dataclass
class Row:
    """One compared quantity: the largest difference, its tolerance, and whether it passed."""

    area: str
    quantity: str
    device: str
    dtype: str
    diff: float
    tol: float
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.diff <= self.tol  # NaN fails

    def to_dict(self) -> dict:
        return {**asdict(self), "ok": self.ok}


def rel_diff(got: torch.Tensor, ref: torch.Tensor) -> float:
    """max |got - ref| / max |ref|, in float32 on the CPU (NaN where shapes differ or values are not finite)."""
    got, ref = got.detach().float().cpu(), ref.detach().float().cpu()
    if got.shape != ref.shape or not torch.isfinite(got).all():
        return float("nan")
    return float((got - ref).abs().max() / ref.abs().max().clamp_min(1e-12))


def pair(arch: str, device: str, dtype: torch.dtype, seed: int = 0):
    """(reference: cpu float32, target: device/dtype) tiny models with the same weights."""
    return tiny_model(arch, seed=seed), tiny_model(arch, seed=seed, device=device, dtype=dtype)


def greedy_gap(ref, prompt_ids: list[int], new_ids: list[int], edits=None) -> float:
    """Largest gap (nats) between the CPU model's best next token and the token chosen, teacher-forced."""
    if not new_ids:
        return float("nan")
    ids = torch.tensor([prompt_ids + new_ids])
    with torch.no_grad(), metalens.hooks(ref, edits or {}):
        logp = ref.hf(input_ids=ids).logits[0].float().log_softmax(-1)  # [pos, vocab]
    steps = logp[len(prompt_ids) - 1 : len(prompt_ids) - 1 + len(new_ids)]
    chosen = steps[torch.arange(len(new_ids)), torch.tensor(new_ids)]
    return float((steps.max(-1).values - chosen).max())


def _name(dtype) -> str:
    return str(dtype).removeprefix("torch.")


def check_capture(device: str, dtype: torch.dtype) -> list[Row]:
    """metalens.capture (mean, last, all) of the residual stream and attention z."""
    ref, dev = pair("gemma3", device, dtype)
    start, rows = time.perf_counter(), []
    want = [sites.resid_post(1), sites.attn_z(2)]
    for positions in ("mean", "last", "all"):
        a = metalens.capture(ref, TEXTS, want, positions=positions, batch_size=3, progress=False)
        b = metalens.capture(dev, TEXTS, want, positions=positions, batch_size=3, progress=False)
        for site in want:
            rows.append(Row("capture", f"{positions} {site}", device, _name(dtype), rel_diff(b[site], a[site]), REL[dtype]))
    for row in rows:
        row.seconds = time.perf_counter() - start
    return rows


def check_neurofeedback(device: str, dtype: torch.dtype) -> list[Row]:
    """A small neurofeedback run on the device, and its two model readouts against the CPU's."""
    from metalens.probes import NeurofeedbackConfig, run_neurofeedback
    from metalens.probes.control import span_means
    from metalens.probes.prompts import render
    from metalens.probes.reporting import label_logprobs

    ref, dev = pair("llama", device, dtype)
    start = time.perf_counter()
    cfg = NeurofeedbackConfig.quick(layer=1, max_sentences=24, n_values=(0, 1, 2), draws=1, control_examples=2,
                                    implicit_trials=1, explicit_trials=1, max_new_tokens=4)
    result = run_neurofeedback(dev, cfg, progress=False)
    finite = all(r.get("accuracy") is None or r["accuracy"] == r["accuracy"] for r in result.summary["rows"])
    sents = ["It is kind to help.", "Stealing is fine.", "Lying hurts people."]
    prompts = [render(m, sents, [1, 0, 1], "report", ("0", "1")) for m in (ref, dev)]
    cand = [ref.tokenizer("0", add_special_tokens=False)["input_ids"][0],
            ref.tokenizer("1", add_special_tokens=False)["input_ids"][0]]
    (lp_ref, _), = label_logprobs(ref, [prompts[0]], cand)
    (lp_dev, _), = label_logprobs(dev, [prompts[1]], cand)
    means_ref, means_dev = span_means(ref, 1, [prompts[0]]), span_means(dev, 1, [prompts[1]])
    seconds = time.perf_counter() - start
    return [Row("neurofeedback", "quick run finishes, finite", device, _name(dtype), 0.0 if finite else 1.0, 0.0, seconds),
            Row("neurofeedback", "label log-probs (abs)", device, _name(dtype),
                float((lp_dev - lp_ref).abs().max()), NATS[dtype] * 2, seconds),
            Row("neurofeedback", "control span means", device, _name(dtype), rel_diff(means_dev, means_ref), REL[dtype], seconds)]


def check_steering(device: str, dtype: torch.dtype) -> list[Row]:
    """train_steering_vector (directions) and steered greedy generation."""
    from metalens.steering import train_steering_vector
    from metalens.steering.generate import format_prompts, generate_ids

    ref, dev = pair("gemma3", device, dtype)
    start = time.perf_counter()
    pos, neg = ["I love the sea.", "Waves and ships.", "The ocean is blue."], ["I love math.", "Numbers add up.", "A sum."]
    v_ref = train_steering_vector(ref, pos, neg, layers=[1])
    v_dev = train_steering_vector(dev, pos, neg, layers=[1])
    rows = [Row("steering", "direction L1", device, _name(dtype), rel_diff(v_dev.directions[1], v_ref.directions[1]),
                REL[dtype])]
    prompts = ["The weather is", "Tell me a story"]
    new = generate_ids(dev, prompts, v_ref, strength=4.0, max_new_tokens=6, chat=False)
    texts = format_prompts(ref, prompts, False)
    gap = max(greedy_gap(ref, ref.tokenizer(t)["input_ids"], row, v_ref.edits(ref, 4.0))
              for t, row in zip(texts, new))
    rows.append(Row("steering", "steered greedy tokens (nats from CPU best)", device, _name(dtype), gap, NATS[dtype]))
    for row in rows:
        row.seconds = time.perf_counter() - start
    return rows


def check_circuits(device: str, dtype: torch.dtype) -> list[Row]:
    """Per-head attribution patching and exact patching scores."""
    from metalens.circuits import attribute_heads, make_task, patch_heads_exact

    ref, dev = pair("gemma3", device, dtype)
    start = time.perf_counter()
    task = make_task("induction", ref.tokenizer, n=4)
    rows = [Row("circuits", "attribution head scores", device, _name(dtype),
                rel_diff(attribute_heads(dev, task), attribute_heads(ref, task)), REL_GRAD[dtype]),
            Row("circuits", "exact patching head scores", device, _name(dtype),
                rel_diff(patch_heads_exact(dev, task), patch_heads_exact(ref, task)), REL_GRAD[dtype])]
    for row in rows:
        row.seconds = time.perf_counter() - start
    return rows


def check_introspect(device: str, dtype: torch.dtype, tmp) -> list[Row]:
    """Rollout hidden states, train_head (+ shuffled), the train/eval/sample workflows and a LoRA start."""
    import json
    from pathlib import Path

    from metalens.introspect import (BinSpec, EvalConfig, Question, SampleConfig, TrainConfig, generate_rollouts,
                                     load_rollouts, rollout_positions, run_eval, run_sample, run_train, train_head)
    from metalens.introspect.heads import shuffled, train_lora
    from metalens.store import sha256 as sha256_text

    tmp = Path(tmp)
    ref, dev = pair("gemma3", device, dtype, seed=2)
    start = time.perf_counter()
    store = tmp / "rollouts"  # made on the CPU, rewards planted (every other sample right): the same inputs for both
    generate_rollouts(ref, [Question(f"Q: What is {i} + 1?\nA:", i + 1, level=1) for i in range(8)], store,
                      n_samples=2, max_new_tokens=5, seed=0, prefix="")
    for r in (records := load_rollouts(store)):
        r["rewards"] = [(r["task_index"] + j) % 2 for j in range(len(r["rewards"]))]
        r["texts"] = [f" {r['answer']}" if ok else " none" for ok in r["rewards"]]  # load_rollouts regrades texts
    (store / "rollouts.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    manifest = json.loads((store / "manifest.json").read_text())
    manifest["sha256"] = sha256_text(store / "rollouts.jsonl")
    (store / "manifest.json").write_text(json.dumps(manifest))
    records = load_rollouts(store)
    spec = BinSpec(edges=(1, 2, 4))
    p_ref, p_dev = rollout_positions(ref, records, spec), rollout_positions(dev, records, spec)
    h_ref, h_dev = train_head(ref, p_ref, spec, steps=30), train_head(dev, p_dev, spec, steps=30)
    # Both heads read the same (CPU, float32) states: a difference is the fit's, not the input's.
    prob = lambda h: spec.p_correct(h.probs_from_hidden(ref, p_ref.hidden))  # noqa: E731
    s_ref, s_dev = (train_head(m, shuffled(p, spec, 1), spec, steps=30) for m, p in ((ref, p_ref), (dev, p_dev)))
    rows = [Row("introspect", "response hidden states", device, _name(dtype), rel_diff(p_dev.hidden, p_ref.hidden), REL[dtype]),
            Row("introspect", "train_head P(correct) (abs)", device, _name(dtype),
                float((prob(h_dev) - prob(h_ref)).abs().max()), REL_GRAD[dtype]),
            Row("introspect", "shuffled head P(correct) (abs)", device, _name(dtype),
                float((prob(s_dev) - prob(s_ref)).abs().max()), REL_GRAD[dtype])]
    results = {}
    for tag, m in (("ref", ref), ("dev", dev)):
        trained = run_train(m, TrainConfig(rollouts=store, steps=30, test_fraction=0.5), out=tmp / tag / "train",
                            progress=False)
        evaluation = run_eval(m, EvalConfig(tmp / tag / "train", fractions=(0.0, 1.0), verbal=False,
                                            n_shuffles=1), progress=False)
        sampling = run_sample(m, SampleConfig(tmp / tag / "train", alphas=(0.0, 0.01)), progress=False)
        results[tag] = (trained.heldout_auroc, evaluation.heldout_auroc, sampling.pool_size)
    rows.append(Row("introspect", "train/eval held-out AUROC (abs)", device, _name(dtype),
                    max(abs(a - b) for a, b in zip(results["dev"][:2], results["ref"][:2])), 2 * REL_GRAD[dtype]))
    rows.append(Row("introspect", "sample pool size equal", device, _name(dtype),
                    float(results["dev"][2] != results["ref"][2]), 0.0))
    history = []
    for m in (ref, dev):  # LoRA started from the head fit: same init and batches, compare the first loss
        _, peft_model, hist = train_lora(m, records, spec, steps=2, init=h_ref, seed=0)
        peft_model.unload()
        history.append(hist[0]["ce"])
    rows.append(Row("introspect", "LoRA first CE from the head (rel)", device, _name(dtype),
                    abs(history[1] - history[0]) / abs(history[0]), REL_GRAD[dtype]))
    for row in rows:
        row.seconds = time.perf_counter() - start
    return rows


def run_all(device: str, dtype: torch.dtype, tmp, areas=None) -> list[Row]:
    """Every area's rows (or those named in `areas`)."""
    checks = {"capture": check_capture, "neurofeedback": check_neurofeedback, "steering": check_steering,
              "circuits": check_circuits, "introspect": lambda d, t: check_introspect(d, t, tmp)}
    rows = []
    for name, check in checks.items():
        if areas is None or name in areas:
            rows += check(device, dtype)
    return rows
