"""Held-out evaluation of the head vs a logistic probe, verbal confidence and shuffled labels."""
from __future__ import annotations

import numpy as np
import torch

from metalens.introspect.heads.features import Positions, final_hidden, flatten
from metalens.introspect.heads.head import ReservedHead
from metalens.introspect.evaluation.metrics import above_chance, auroc_gap, reliability, summary, within_problem_auroc
from metalens.introspect.heads.train import shuffled, train_head

FRACTIONS = (0.0, 0.25, 0.5, 0.75, 1.0)
VERBAL_SUFFIX = "\nIs the answer above correct? Answer Yes or No.\nAnswer:"


def rows_at_fraction(positions: Positions, frac: float) -> torch.Tensor:
    """Row index per sample of its prefix at `frac` of the response (0: before any token, 1: last)."""
    samples = positions.sample.unique(sorted=True)
    first = torch.searchsorted(positions.sample, samples)
    counts = torch.bincount(positions.sample)[samples]
    offset = torch.minimum((frac * counts).long(), counts - 1)
    return first + offset


def fit_probe(train: Positions, seed: int = 0):
    """A logistic-regression probe for the reward on the same final-norm hidden state."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    classes = train.reward.unique().tolist()
    if len(classes) < 2:
        state = "correct" if classes == [1] else "incorrect"
        raise ValueError(
            f"Every training rollout is {state}, so no reward predictor can be fitted. Sample more "
            "problems or samples per problem (--n-tasks, --n-samples), or pick levels the model "
            "solves 20-80 % of the time."
        )
    probe = make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=2000, random_state=seed))
    return probe.fit(train.hidden.numpy(), train.reward.numpy())


@torch.no_grad()
def verbal_confidence(model, records: list[dict], positions: Positions, rows: torch.Tensor,
                      batch_size: int = 8) -> np.ndarray:
    """P(' Yes') / (P(' Yes') + P(' No')) when the model is asked whether its partial answer is right.

    `records` are all the rollout records, indexed like `positions.sample`.
    """
    samples = flatten(records)
    tok = model.tokenizer
    suffix = tok(VERBAL_SUFFIX, add_special_tokens=False)["input_ids"]
    yes, no = (tok(w, add_special_tokens=False)["input_ids"][0] for w in (" Yes", " No"))
    sequences = []
    for row in rows.tolist():
        s = samples[int(positions.sample[row])]
        t = int(round(float(positions.frac[row]) * len(s["completion"])))
        sequences.append(s["prompt_ids"] + s["completion"][:t] + suffix)
    hidden = final_hidden(model, sequences, [len(q) - 1 for q in sequences], [1] * len(sequences), batch_size)
    logits = model.unembed(torch.cat(hidden), [yes, no])  # [n, 2]: the two logits the model would give
    return logits.softmax(-1)[:, 0].cpu().numpy()


def compare(y: np.ndarray, preds: dict[str, np.ndarray], shuffles: list[np.ndarray], groups: np.ndarray,
            n_boot: int = 500, seed: int = 0, units: np.ndarray | None = None) -> dict:
    """Summaries of each predictor, the shuffled-label heads (mean over heads), and for the head:
    its AUROC gap over them (`head_vs_shuffled`), its AUROC - 0.5 (`head_above_chance`), and the
    within-problem AUROC over problems with mixed outcomes (`within_problem`, beside the probe's
    and the shuffled heads'), each with a 95 % bootstrap interval.

    groups: the problem (task index) of each row; units: the unit a bootstrap resamples (default
    the problem; e.g. the operand multiset, so commuted twins travel together).
    """
    units = groups if units is None else units
    out = {k: summary(y, p) for k, p in preds.items()}
    runs = [summary(y, p) for p in shuffles]
    out["shuffled"] = {k: float(np.mean([r[k] for r in runs])) for k in ("auroc", "brier", "ece", "corr", "acc@0.5")}
    out["shuffled"].update(n=int(len(y)), aurocs=[r["auroc"] for r in runs])
    out["head_vs_shuffled"] = auroc_gap(y, preds["head"], shuffles, units, n_boot, seed)
    out["head_above_chance"] = above_chance(y, preds["head"], units, n_boot, seed)
    within = {k: within_problem_auroc(y, p, groups, units, n_boot, seed) for k, p in preds.items()}
    shuffled_within = [within_problem_auroc(y, p, groups, units, 0, seed)["estimate"] for p in shuffles]
    out["within_problem"] = {**within, "shuffled": float(np.mean(shuffled_within)) if shuffles else float("nan")}
    return out


def shuffled_heads(model, train: Positions, spec, n: int, steps: int, seed: int, start=None) -> list[ReservedHead]:
    """`n` heads trained on rewards shuffled across samples with seeds seed..seed+n-1 (the null)."""
    return [train_head(model, shuffled(train, spec, seed + i), spec, steps=steps, seed=seed + i, start=start)
            for i in range(n)]


def evaluate_head(
    model,
    head: ReservedHead,
    train: Positions,
    test: Positions,
    records: list[dict] | None = None,
    fractions=FRACTIONS,
    verbal: bool = True,
    seed: int = 0,
    head_steps: int = 100,
    n_shuffles: int = 3,
    n_boot: int = 500,
    units: dict[int, int] | None = None,
) -> dict:
    """Reward-marginal calibration at each prefix fraction, remaining-length error, and baselines.

    Baselines: a logistic probe on the same hidden state, `n_shuffles` heads trained on shuffled
    rewards (no signal; `head_vs_shuffled` is the head's AUROC gap over them with a bootstrap
    interval over held-out problems), and the model's verbal confidence (needs all `records`).
    `units` (task index -> unit, e.g. `rollouts.problem_units`) sets what the bootstraps resample.
    """
    spec = head.spec
    nulls = shuffled_heads(model, train, spec, n_shuffles, head_steps, seed, head.start)
    probe = fit_probe(train, seed)
    probs = head.probs_from_hidden(model, test.hidden)  # [n_pos, K]
    p_head = spec.p_correct(probs).numpy()
    p_shuf = [spec.p_correct(h.probs_from_hidden(model, test.hidden)).numpy() for h in nulls]
    p_probe = probe.predict_proba(test.hidden.numpy())[:, 1]
    groups = test.task.numpy()
    unit = groups if units is None else np.array([units[int(t)] for t in groups])
    exp_len = spec.expected_remaining(probs).numpy()
    base_len = float(train.remaining.float().mean())
    remaining, reward = test.remaining.numpy(), test.reward.numpy()
    out = {"fractions": [], "reliability": {}, "n_test_samples": int(test.sample.unique().numel()),
           "n_train_positions": len(train.reward), "n_test_positions": len(test.reward)}
    for f in fractions:
        rows = rows_at_fraction(test, f)
        y = reward[rows]
        entry = {"fraction": f, **compare(y, {"head": p_head[rows], "probe": p_probe[rows]},
                                          [p[rows] for p in p_shuf], groups[rows], n_boot, seed, unit[rows]),
                 "length_mae": float(np.abs(exp_len[rows] - remaining[rows]).mean()),
                 "length_mae_constant": float(np.abs(base_len - remaining[rows]).mean()),
                 "length_bin_accuracy": float((spec.length_marginal(probs[rows]).argmax(-1)
                                               == spec.length_bin(test.remaining[rows])).float().mean())}
        if verbal and records is not None:
            entry["verbal"] = summary(y, verbal_confidence(model, records, test, rows))
        out["fractions"].append(entry)
        out["reliability"][str(f)] = reliability(y, p_head[rows])
    out["all_positions"] = {**compare(reward, {"head": p_head, "probe": p_probe}, p_shuf, groups, n_boot, seed, unit),
                            "length_mae": float(np.abs(exp_len - remaining).mean()),
                            "length_mae_constant": float(np.abs(base_len - remaining).mean())}
    return out
