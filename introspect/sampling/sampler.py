"""Evaluating the adaptive sampler (`policy.decide`) against voting baselines by replay.

Decisions depend only on prefixes, so the policy is evaluated by replaying pools of fully
generated samples: pruning at token t costs exactly the t tokens a live run would have spent
(live.adaptive_generate runs the same rule while generating; a test checks they agree).
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np

from metalens import stats

import torch

from metalens.introspect.evaluation.crossval import problem_folds
from metalens.introspect.heads.bins import BinSpec
from metalens.introspect.heads.features import Positions, flatten
from metalens.introspect.heads.head import ReservedHead
from metalens.introspect.heads.train import train_head
from metalens.introspect.rollouts.splits import problem_units
from metalens.introspect.sampling.comparisons import wins_ties_losses
from metalens.introspect.sampling.policy import decide
from metalens.tasks.arithmetic import extract_answer


@dataclass
class PoolSample:
    """One generated sample of a task: its answer, reward, and the head read at every prefix."""

    answer: int | None
    reward: int
    p_correct: np.ndarray  # [n_tokens]
    expected_remaining: np.ndarray  # [n_tokens]

    @property
    def n_tokens(self) -> int:
        return len(self.p_correct)


def build_pools(model, records: list[dict], positions: Positions, head: ReservedHead) -> list[list[PoolSample]]:
    """Per task in `positions`, its samples with the head's predictions at each prefix.

    `records` are all the rollout records, indexed like `positions.sample` (global sample ids).
    """
    probs = head.probs_from_hidden(model, positions.hidden)
    p, e = head.spec.p_correct(probs).numpy(), head.spec.expected_remaining(probs).numpy()
    rows, pools = flatten(records), {}
    for index in positions.sample.unique(sorted=True).tolist():
        row, sel = rows[index], (positions.sample == index).numpy()
        pools.setdefault(row["task_index"], []).append(
            PoolSample(extract_answer(row["text"]), row["reward"], p[sel], e[sel]))
    return [pools[k] for k in sorted(pools)]


def out_of_fold_pools(model, positions: Positions, records: list[dict], spec: BinSpec, k: int, steps: int = 100,
                      seed: int = 0, start: int | None = None, heads: dict | None = None) -> list[list[PoolSample]]:
    """Every problem's sample pool, read by a head trained without that problem (its fold held out),
    so the sampler can be compared on all problems instead of one held-out split. Pools come fold by
    fold, sorted by task within a fold; `heads`, a dict, receives task index -> its fold's head."""
    pools = []
    for fold in problem_folds(positions, k, seed, problem_units(records)):
        test = torch.isin(positions.task, torch.tensor(fold))
        head = train_head(model, positions.select(~test), spec, steps=steps, seed=seed, start=start)
        pools += build_pools(model, records, positions.select(test), head)
        if heads is not None:
            heads.update({t: head for t in sorted(fold)})
    return pools


def weighted_vote(answers: list, weights: list[float] | None = None):
    """The answer with the largest total weight (None answers ignored); None when there is none."""
    weights = weights or [1.0] * len(answers)
    tally: Counter = Counter()
    for a, w in zip(answers, weights):
        if a is not None:
            tally[a] += w
    return tally.most_common(1)[0][0] if tally else None


def majority(pool: list[PoolSample], n: int) -> tuple[int, int]:
    """(correct, tokens) of majority voting over the first `n` samples."""
    used = pool[:n]
    answer = weighted_vote([s.answer for s in used])
    correct = answer is not None and any(s.answer == answer and s.reward for s in used)
    return int(correct), sum(s.n_tokens for s in used)


def best_of_n(pool: list[PoolSample], n: int) -> tuple[int, int]:
    """(correct, tokens) of picking, among the first `n`, the sample the head rates highest at its end."""
    used = pool[:n]
    best = max(used, key=lambda s: s.p_correct[-1])
    return best.reward, sum(s.n_tokens for s in used)


def adaptive(pool: list[PoolSample], alpha: float, beta: float = 0.0, every: int = 4,
             initial: int = 1) -> tuple[int, int, int]:
    """(correct, tokens, latency in decode steps) of the adaptive policy replayed on one task's pool.

    Checkpoints fall every `every` tokens and whenever a sample finishes, as in `live.adaptive_generate`.
    """
    progress = {i: 0 for i in range(min(initial, len(pool)))}  # running: tokens generated so far
    finished: list[int] = []
    next_new, tokens, steps = len(progress), 0, 0
    prior = (float(pool[0].p_correct[0]), float(pool[0].expected_remaining[0]))
    while progress:
        step = min(every, *(pool[i].n_tokens - t for i, t in progress.items()))
        for i in list(progress):
            progress[i] += step
            tokens += step
            if progress[i] >= pool[i].n_tokens:
                finished.append(i)
                del progress[i]
        steps += step
        running = {i: (float(pool[i].p_correct[t]), float(pool[i].expected_remaining[t])) for i, t in progress.items()}
        pruned, n_new = decide(running, [float(pool[i].p_correct[-1]) for i in finished], prior, alpha, beta,
                               can_start=len(pool) - next_new)
        for i in pruned:
            del progress[i]
        for _ in range(n_new):
            progress[next_new] = 0
            next_new += 1
    if not finished:
        return 0, tokens, steps
    answer = weighted_vote([pool[i].answer for i in finished], [float(pool[i].p_correct[-1]) for i in finished])
    correct = answer is not None and any(pool[i].answer == answer and pool[i].reward for i in finished)
    return int(correct), tokens, steps


def pareto(pools: list[list[PoolSample]], alphas=None, beta: float = 0.0, every: int = 4) -> dict:
    """Accuracy vs mean tokens per task for majority@N, best-of-N (head) and the adaptive sampler."""
    n_max = min(len(p) for p in pools)
    alphas = alphas if alphas is not None else [0.0, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1]

    def curve(fn, params, label):
        points = []
        for param in params:
            results = np.array([fn(pool, param)[:2] for pool in pools], dtype=float)
            points.append({"method": label, "param": param, "accuracy": results[:, 0].mean(),
                           "tokens": results[:, 1].mean()})
        return points

    out = {"majority": curve(majority, range(1, n_max + 1), "majority@N"),
           "best_of_n": curve(best_of_n, range(1, n_max + 1), "best-of-N (head)"),
           "pass_at_n": [{"method": "pass@N (oracle)", "param": n,
                          "accuracy": float(np.mean([max(s.reward for s in p[:n]) for p in pools])),
                          "tokens": float(np.mean([sum(s.n_tokens for s in p[:n]) for p in pools]))}
                         for n in range(1, n_max + 1)],
           "adaptive": []}
    votes = [np.array([majority(pool, n) for pool in pools], dtype=float) for n in range(1, n_max + 1)]
    out["paired"] = []
    for initial in (1, 2):
        for alpha in alphas:
            r = np.array([adaptive(p[:n_max], alpha, beta, every, initial) for p in pools], dtype=float)
            out["adaptive"].append({"method": f"adaptive (start {initial})", "param": alpha, "initial": initial,
                                    "accuracy": r[:, 0].mean(), "tokens": r[:, 1].mean(), "latency": r[:, 2].mean()})
            out["paired"].append({"method": f"adaptive (start {initial})", "alpha": alpha,
                                  **paired_vs_majority(r, votes)})
    for n in range(2, n_max + 1):  # the head as a verifier: best-of-N vs majority over the same N samples
        r = np.array([best_of_n(pool, n) for pool in pools], dtype=float)
        out["paired"].append({"method": f"best-of-{n} (head)", "alpha": None, **paired_vs_majority(r, votes)})
    tested = [r for r in out["paired"] if r.get("majority_n")]
    for row, p_holm in zip(tested, stats.holm([r["p"] for r in tested])):
        row["p_holm"], row["n_comparisons"] = float(p_holm), len(tested)
    out["n_comparisons"] = len(tested)
    out["matched"] = matched_cost(out["adaptive"], out["majority"])
    out["n_tasks"], out["pool_size"] = len(pools), n_max
    return out


def paired_vs_majority(runs: np.ndarray, votes: list[np.ndarray], n_boot: int = 2000, seed: int = 0) -> dict:
    """The adaptive runs [tasks, (correct, tokens, ...)] against majority@N on the same problems.

    N is the smallest pool size whose mean tokens are at least the sampler's, so majority never
    spends less. Reports per-problem wins/losses, the accuracy difference with a 95 % bootstrap
    interval over problems (paired: both columns of a resampled problem travel together; null bounds
    below `metalens.stats.MIN_BOOTSTRAP_UNITS` problems, `ci_method` says why), the paired t-test's
    two-sided p and the exact sign test's `p_sign` (`pareto` adds the Holm-adjusted p over all its comparisons).
    """
    tokens = runs[:, 1].mean()
    n = next((i for i, v in enumerate(votes) if v[:, 1].mean() >= tokens), None)
    if n is None:
        return {"majority_n": None, "note": "spends more tokens than majority over the whole pool"}
    diff = runs[:, 0] - votes[n][:, 0]  # [tasks] in {-1, 0, 1}
    ci = stats.bootstrap_ci(lambda idx: float(diff[idx].mean()), np.arange(len(diff)), n_boot=n_boot, seed=seed)
    test = stats.paired_test(runs[:, 0], votes[n][:, 0])
    return {"majority_n": n + 1, "tokens": float(tokens), "majority_tokens": float(votes[n][:, 1].mean()),
            "accuracy": float(runs[:, 0].mean()), "majority_accuracy": float(votes[n][:, 0].mean()),
            "difference": ci.estimate, "ci95": [ci.low, ci.high], "ci_method": ci.method, "p": test.p,
            "d_z": test.d_z, **wins_ties_losses(runs[:, 0], votes[n][:, 0])}


def matched_cost(points: list[dict], baseline: list[dict]) -> list[dict]:
    """Each adaptive point next to the baseline's accuracy interpolated at the same mean tokens."""
    xs = np.array([b["tokens"] for b in baseline])
    ys = np.array([b["accuracy"] for b in baseline])
    order = np.argsort(xs)
    rows = []
    for pt in points:
        inside = xs.min() <= pt["tokens"] <= xs.max()
        base = float(np.interp(pt["tokens"], xs[order], ys[order])) if inside else float("nan")
        rows.append({"method": pt["method"], "alpha": pt["param"], "tokens": pt["tokens"], "accuracy": pt["accuracy"],
                     "majority_at_same_tokens": base, "difference": pt["accuracy"] - base})
    return rows
