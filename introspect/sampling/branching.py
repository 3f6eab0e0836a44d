"""The utility sampler, live: at each checkpoint the joint head picks continue / stop / start /
branch (`utility.choose_actions`), and a branch continues a running sample's prefix from a copy
of its KV cache, as new samples start from a copy of the prompt's.

Branches cannot be replayed from stored rollouts (a branch's continuation was never generated),
so this sampler runs live only; `utility_runs` compares it, on the same held-out problems, with
majority voting, best-of-N (picked by the head) and the prune-only sampler replayed on the stored
samples, each at the smallest pool size (or prune-only alpha) spending at least as many tokens.
"""
from __future__ import annotations

import time

import numpy as np
import torch

from metalens import stats
from metalens.generate import StopRule
from metalens.tasks.arithmetic import extract_answer
from metalens.introspect.heads.head import ReservedHead
from metalens.introspect.sampling.cohort import CohortDecoder
from metalens.introspect.sampling.comparisons import wins_ties_losses
from metalens.introspect.sampling.live import AdaptiveResult
from metalens.introspect.sampling.sampler import adaptive, best_of_n, majority, weighted_vote
from metalens.introspect.sampling.utility import Reading, choose_actions


@torch.no_grad()
def utility_generate(model, head: ReservedHead, prompt_ids: list[int], alpha: float, beta: float = 0.0,
                     every: int = 4, initial: int = 1, max_samples: int = 8, max_new_tokens: int = 48,
                     temperature: float = 0.3, min_p: float | None = None, branch: bool = True,
                     stop: StopRule | None = None, seed: int | None = None, answer_fn=extract_answer) -> AdaptiveResult:
    """Generate up to `max_samples` answers to one prompt, choosing meta-actions by the set's utility.

    `tokens` counts sampled tokens (a branch's copied prefix is not re-spent), `steps` decode steps
    (the latency); `events` list each checkpoint's actions. The answer is the vote of finished
    samples weighted by their expected reward at their last reading.
    """
    if initial < 1 or max_samples < initial:
        raise ValueError(f"Need 1 <= initial ({initial}) <= max_samples ({max_samples}).")
    generator = None if seed is None else torch.Generator(model.device).manual_seed(seed)
    with head.applied(model):
        return _decode(model, head, prompt_ids, alpha, beta, every, initial, max_samples, max_new_tokens, temperature,
                    min_p, branch, stop or StopRule(model.tokenizer, ["\n"]), generator, answer_fn)


def _decode(model, head, prompt_ids, alpha, beta, every, initial, max_samples, max_new_tokens, temperature, min_p,
         branch, stop, generator, answer_fn) -> AdaptiveResult:
    spec = head.spec
    shape = (spec.n_rewards, spec.n_lengths)
    decoder = CohortDecoder(model, head, prompt_ids, max_new_tokens, temperature, min_p, stop, generator)
    prior = decoder.prompt_probs[0].reshape(shape).numpy()
    decoder.start(initial)
    finished, pruned, p_final, last_probs, events = [], [], {}, {}, []
    steps = since = 0
    while decoder.cohorts:
        ended = decoder.step()
        for sid, probs in ended:
            finished.append(sid)
            last_probs[sid] = probs
            p_final[sid] = float(spec.p_correct(probs))
        steps += 1
        since += 1
        if since < every and not ended:
            continue
        since = 0
        running = {sid: Reading(probs.reshape(shape).numpy(), len(decoder.tokens_of[sid]))
                   for sid, probs in decoder.running()}
        done = [spec.reward_marginal(last_probs[i]).numpy() for i in finished]
        actions = choose_actions(running, done, prior, spec, alpha, beta, max_new_tokens,
                                 can_start=max_samples - len(decoder.tokens_of), branch=branch)
        cut = [i for kind, i in actions if kind == "stop"]
        decoder.stop(cut)
        pruned += cut
        n_new = sum(kind == "start" for kind, _ in actions)
        if n_new:
            decoder.start(n_new)
        for kind, i in actions:
            if kind == "branch":
                decoder.branch(i)
        if actions:
            events.append({"step": steps, "actions": [[k, i] for k, i in actions]})
    texts = decoder.texts()
    answer = weighted_vote([answer_fn(texts[i]) for i in finished], [p_final[i] for i in finished])
    return AdaptiveResult(answer, texts, finished, pruned, p_final, decoder.tokens, steps, events, decoder.tokens_of)


def _paired(a: np.ndarray, b: np.ndarray, n_boot: int = 2000, seed: int = 0) -> dict:
    """Per problem wins / ties / losses of a against b with the exact sign test (the headline), and the
    mean of a - b with a 95 % bootstrap interval over problems (null bounds below
    `metalens.stats.MIN_BOOTSTRAP_UNITS`, `ci_method` says why) and the paired t-test's p."""
    diff = a - b
    ci = stats.bootstrap_ci(lambda idx: float(diff[idx].mean()), np.arange(len(diff)), n_boot=n_boot, seed=seed)
    return {**wins_ties_losses(a, b), "difference": ci.estimate, "ci95": [ci.low, ci.high], "ci_method": ci.method,
            "p": stats.paired_test(a, b).p}


def _matched(pools, tokens: float, fn, sizes) -> tuple[object, np.ndarray | None]:
    """The first setting in `sizes` whose mean tokens over `pools` reach `tokens`, and its per-problem results."""
    for size in sizes:
        runs = np.array([fn(pool, size)[:2] for pool in pools], dtype=float)
        if runs[:, 1].mean() >= tokens:
            return size, runs
    return None, None


def utility_runs(model, head, records: list[dict], pools: list, task_ids: list[int], alphas, betas, every: int = 4,
                 seed: int = 0, branch: bool = True, prune_alphas=(0.0, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1),
                 max_new_tokens: int | None = None, temperature: float | None = None,
                 min_p: float | None = None, progress: bool = False,
                 heads: dict[int, ReservedHead] | None = None, *, settings: dict) -> list[dict]:
    """The live utility sampler on `task_ids` at each (alpha, beta), against the stored samples of the
    same problems (`pools`, one per task in `task_ids` order): majority@N, best-of-N (head) and the
    prune-only replay, each at the smallest N (alpha) spending at least the sampler's mean tokens.
    Differences are paired per problem with 95 % bootstrap intervals over problems, overall and per
    difficulty level; every row carries its Holm-adjusted p over the rows' comparisons. `heads`: a
    head per task (cross-validation: each read by a head trained without its fold), else `head`.
    `settings`: how the rollouts were sampled (`rollouts.rollouts_settings`), the defaults of the
    sampler's own max_new_tokens, temperature and min_p."""
    by_id = {r["task_index"]: r for r in records}
    manifest = settings
    pool_size = min(len(p) for p in pools)
    levels = np.array([by_id[t]["level"] for t in task_ids])
    rows = []
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(alphas) * len(betas) * len(task_ids), desc="utility sampler", unit="problem")
    for alpha in alphas:
        for beta in betas:
            runs, seconds = [], 0.0
            for t in task_ids:
                if bar is not None:
                    bar.update()
                begin = time.perf_counter()
                run = utility_generate(model, heads[t] if heads else head, by_id[t]["prompt_ids"], alpha, beta, every,
                                       max_samples=pool_size,
                                       max_new_tokens=max_new_tokens or manifest["max_new_tokens"],
                                       temperature=manifest["temperature"] if temperature is None else temperature,
                                       min_p=manifest.get("min_p") if min_p is None else min_p, branch=branch,
                                       seed=seed + t)
                seconds += time.perf_counter() - begin
                n_branch = sum(k == "branch" for e in run.events for k, _ in e["actions"])
                runs.append((int(run.answer == by_id[t]["answer"]), run.tokens, run.steps, n_branch))
            runs = np.array(runs, dtype=float)
            mean_tokens = float(runs[:, 1].mean())
            row = {"alpha": alpha, "beta": beta, "branch": branch, "n_problems": len(task_ids),
                   "accuracy": float(runs[:, 0].mean()), "tokens": mean_tokens, "latency": float(runs[:, 2].mean()),
                   "branches": float(runs[:, 3].mean()), "seconds": seconds / len(task_ids), "vs": {}}
            baselines = {
                "majority": _matched(pools, mean_tokens, majority, range(1, pool_size + 1)),
                "best_of_n": _matched(pools, mean_tokens, best_of_n, range(1, pool_size + 1)),
                "prune_only": _matched(pools, mean_tokens, lambda p, a: adaptive(p, a, beta, every)[:2],
                                       sorted(prune_alphas, reverse=True)),
            }
            for name, (setting, base) in baselines.items():
                if base is None:
                    row["vs"][name] = {"setting": None, "note": "no setting spends as many tokens"}
                    continue
                by_level = {int(lv): {"n": int((levels == lv).sum()), "accuracy": float(runs[levels == lv, 0].mean()),
                                      "baseline_accuracy": float(base[levels == lv, 0].mean()),
                                      **wins_ties_losses(runs[levels == lv, 0], base[levels == lv, 0])}
                            for lv in np.unique(levels)}
                row["vs"][name] = {"setting": setting, "tokens": float(base[:, 1].mean()),
                                   "accuracy": float(base[:, 0].mean()), **_paired(runs[:, 0], base[:, 0], seed=seed),
                                   "by_level": by_level}
            rows.append(row)
    tested = [v for r in rows for v in r["vs"].values() if "p" in v]
    for v, p_holm in zip(tested, stats.holm([v["p"] for v in tested])):
        v["p_holm"], v["n_comparisons"] = float(p_holm), len(tested)
    return rows
