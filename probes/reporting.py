"""The reporting (metacognitive monitoring) task: can the model tell, from N in-context
(sentence, label) examples, the neurofeedback label of a new sentence?

One prompt holds `n_max + 1` labelled items; the label of item i is predicted from the i items
before it, so one forward pass scores every N from 0 to n_max (a learning curve per prompt).
The score is the probability the model gives the correct label token, renormalised over the
label tokens: accuracy (argmax) and cross-entropy, no sampling needed. A prompt never holds two
items of one group (near-copies), so no label can be copied from a near-copy shown earlier.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from tqdm.auto import tqdm

import metalens
from metalens.probes.confounds import other_axes_p1, score_predictions
from metalens.probes.datasets import sample_distinct_groups
from metalens.probes.mde import paired_mde, two_proportions_mde
from metalens.probes.prompts import Rendered, label_token_ids, render
from metalens.probes.surface import prompt_surface_scores
from metalens.stats import add_holm, holm, mean_ci, paired_test

DEFAULT_N = (0, 2, 4, 8, 16, 32, 64)


def label_logprobs(model, prompts: list[Rendered], cand_ids: list[int], batch_size: int = 4, max_tokens: int = 8192,
                   edits=None):
    """Per prompt: (log p over the label tokens at each label position [n_items, n_labels],
    total probability mass of the label tokens in the full vocabulary [n_items]).

    Batches hold at most `max_tokens` padded tokens (a long prompt runs alone; see `prompts.batches`).
    `edits` ({site: fn}, as `metalens.next_token_logprobs` takes them) are active during the passes."""
    # Each label is read at the position before it: the one that predicts it.
    reads = metalens.next_token_logprobs(model, [r.input_ids for r in prompts], cand_ids,
                                         positions=[[p - 1 for p in r.label_pos] for r in prompts],
                                         batch_size=batch_size, max_tokens=max_tokens, edits=edits)
    return [(full.log_softmax(-1), full.exp().sum(-1)) for full in reads.logprobs]  # full: [n_items, n_labels]


@dataclass
class ReportingResult:
    """Probability of the correct label per axis, draw and item position (= N examples before it).

    `p_correct` is [n_axes, draws, n_max + 1]; `shuffled_p_correct` [n_axes, draws, n_max + 1]
    uses the same sentences with each axis' own labels permuted (the chance baseline: labels carry
    no information about the sentence, only that axis' base rate; a result saved with one shared
    baseline [draws, n_max + 1] loads as that baseline for every axis). `label_mass` is the share of the full next-token
    distribution on the label tokens, [n_axes, draws, n_max + 1]. `items` [draws, n_max + 1]
    are the indices (into the texts given to `measure_reporting`) of each draw's items, in prompt order.
    `surface` [n_axes, draws, n_max + 1] scores a text-only learner (`metalens.probes.surface`)
    fitted on the same N examples of the same prompt: 1 right, 0 wrong, 0.5 a coin flip.
    `others` [n_axes, draws, n_max + 1] scores, on the same items, a learner that knows every other
    tested axis' label of each item (`metalens.probes.confounds`): the correlated-axes control.
    """

    axis_names: list[str]
    n_values: list[int]
    p_correct: np.ndarray
    shuffled_p_correct: np.ndarray
    label_mass: np.ndarray
    example_prompt: str
    metadata: dict = field(default_factory=dict)
    items: np.ndarray | None = None
    surface: np.ndarray | None = None
    others: np.ndarray | None = None

    def __post_init__(self):
        shuffled = np.asarray(self.shuffled_p_correct)
        if shuffled.ndim == 2:  # results from before the per-axis baseline
            shuffled = shuffled[None]
        if shuffled.shape[0] == 1 < len(self.axis_names):
            shuffled = np.broadcast_to(shuffled, (len(self.axis_names), *shuffled.shape[1:])).copy()
        self.shuffled_p_correct = shuffled

    def _bins(self) -> list[tuple[int, range]]:
        n_items = self.p_correct.shape[-1]
        values = [n for n in self.n_values if n < n_items]
        bins, prev = [], -1
        for n in values:
            bins.append((n, range(prev + 1, n + 1)))
            prev = n
        return bins

    def curve(self, p: np.ndarray) -> list[dict]:
        """Learning curve of `p` [draws, n_items]: per N bin (prev N, N], accuracy and
        cross-entropy (nats) with 95% t-intervals over draws."""
        rows = []
        for n, span in self._bins():
            block = p[:, list(span)]
            per_draw = (block > 0.5).mean(1)
            acc = mean_ci(per_draw)
            ce = mean_ci((-np.log(np.clip(block, 1e-12, 1))).mean(1))
            # The paper's criterion: accuracy above 0.5 at this N (one-sided one-sample t over draws).
            vs_half = paired_test(per_draw, np.full_like(per_draw, 0.5), alternative="greater").p
            # t-intervals over few draws can leave [0, 1] (min/max keep NaN bounds NaN)
            rows.append({"N": n, "N_from": span[0], "accuracy": acc.estimate, "acc_low": max(acc.low, 0.0),
                         "acc_high": min(acc.high, 1.0), "cross_entropy": ce.estimate, "ce_low": max(ce.low, 0.0),
                         "ce_high": ce.high, "p_vs_half": vs_half})
        return rows

    def curves(self) -> dict[str, list[dict]]:
        """`curve` for every axis (each row with the surface learner's accuracy beside the model's), plus
        "shuffled" (every axis' shuffled draws pooled: the figure's chance line; tests use each axis' own)."""
        out = {name: self.curve(self.p_correct[a]) for a, name in enumerate(self.axis_names)}
        if self.surface is not None:
            for a, name in enumerate(self.axis_names):
                for row, (_, span) in zip(out[name], self._bins()):
                    row.update(_surface_fields(self.surface[a][:, list(span)]))
        out["shuffled"] = self.curve(self.shuffled_p_correct.reshape(-1, self.shuffled_p_correct.shape[-1]))
        return out

    def tests(self, n_min: int = 8) -> list[dict]:
        """Per axis: accuracy over items with N >= n_min (per-draw means) against its shuffled
        baseline (that axis' labels permuted, so the base rate is kept), by a one-sided *paired*
        t-test over draws (same sentences), Holm-corrected across the axes tested.

        Each row gives the accuracy with its 95% t-interval over draws (clipped to [0, 1]), the paired difference
        (axis - shuffled) with its interval and d_z, `p` (axis above shuffled), `p_holm`,
        `n_comparisons` (the Holm family size) and `p_below` (one-sided, below shuffled; uncorrected).
        With `surface`, also `surface_accuracy` (the text-only learner on the same items, averaged
        like the model's accuracy: per draw over items, then over draws) and its interval, and the
        paired model - surface difference over draws (`vs_surface_diff`, one-sided `p_vs_surface`,
        Holm-adjusted across the axes in `p_vs_surface_holm`). With `others`, the same against the
        learner that knows the other axes' labels (`others_accuracy`, `vs_others_diff`, `p_vs_others`,
        `p_vs_others_holm`): an axis whose labels the other axes' labels predict as well as the model
        does is not evidence of reporting *this* axis.
        Each row carries `mde`, what a null could have seen: the smallest accuracy rise over the own
        shuffle that the paired test over draws detects at 80 % power, at the run's draws, the spread
        of its per-draw differences and alpha / n_comparisons (Holm's strictest step); and `mde_items`,
        the item-level two-proportion MDE at the scored items' count (optimistic context).
        """
        n_min = min(n_min, self.p_correct.shape[-1] - 1)  # a short run still tests its longest items

        def per_draw(p):
            return (p[:, n_min:] > 0.5).mean(1)

        rows, diffs = [], []
        for a, name in enumerate(self.axis_names):
            base = per_draw(self.shuffled_p_correct[a])  # this axis' labels permuted: same base rate
            base_ci = mean_ci(base)
            acc = per_draw(self.p_correct[a])
            ci = mean_ci(acc)
            above = paired_test(acc, base, alternative="greater")
            diffs.append(acc - base)
            # t-intervals over few draws can leave [0, 1]: accuracies' bounds are clipped to it
            rows.append({"axis": name, "accuracy": ci.estimate, "acc_low": max(ci.low, 0.0), "acc_high": min(ci.high, 1.0),
                         "shuffled_accuracy": base_ci.estimate, "shuffled_low": max(base_ci.low, 0.0),
                         "shuffled_high": min(base_ci.high, 1.0),
                         "diff": above.mean_diff, "diff_low": above.low, "diff_high": above.high, "d_z": above.d_z,
                         "p": above.p, "n_draws": above.n, "n_min": n_min,
                         "test": "one-sided paired t-test over draws (axis vs shuffled labels on the same sentences)",
                         # Below chance is information too (the axis is read, the label mapping inverted).
                         "p_below": paired_test(acc, base, alternative="less").p,
                         # The paper's criterion beside ours: above 0.5 (one-sided one-sample t over draws).
                         "p_vs_half": paired_test(acc, np.full_like(acc, 0.5), alternative="greater").p,
                         **(_surface_fields(self.surface[a][:, n_min:], acc) if self.surface is not None else {}),
                         **(_others_fields(self.others[a][:, n_min:], acc) if self.others is not None else {})})
        rows = add_holm(rows)
        n_scored = self.p_correct.shape[1] * (self.p_correct.shape[-1] - n_min)  # items per arm, all draws
        for row, diff in zip(rows, diffs):
            row["mde"] = paired_mde(diff, row["n_comparisons"], "paired t over draws (accuracy - own shuffled "
                                    "accuracy, items with N >= n_min)", "accuracy")
            row["mde_items"] = two_proportions_mde(row["shuffled_accuracy"], n_scored, row["n_comparisons"])
        for row, adj in zip(rows, holm([row["p_vs_half"] for row in rows])):
            row["p_vs_half_holm"] = float(adj)
        if self.surface is not None:  # a second family: the model against the words-only learner
            for row, adj in zip(rows, holm([row["p_vs_surface"] for row in rows])):
                row["p_vs_surface_holm"] = float(adj)
        if self.others is not None:  # the correlated-axes control: its own family, same alpha
            for row, adj in zip(rows, holm([row["p_vs_others"] for row in rows])):
                row["p_vs_others_holm"] = float(adj)
        return rows

    def to_dict(self) -> dict:
        """Everything, JSON-ready (numpy arrays become lists in save_json)."""
        return {"axis_names": self.axis_names, "n_values": self.n_values, "p_correct": self.p_correct,
                "shuffled_p_correct": self.shuffled_p_correct, "label_mass": self.label_mass,
                "curves": self.curves(), "tests": self.tests(self.metadata.get("n_test_min", 8)),
                "items": self.items, "surface": self.surface, "others": self.others, "example_prompt": self.example_prompt,
                "metadata": self.metadata}


def _surface_fields(scores: np.ndarray, model_acc: np.ndarray | None = None) -> dict:
    """Surface accuracy of `scores` [draws, items]: mean over items per draw, then a 95% t-interval over draws.

    With `model_acc` (the model's accuracy per draw on the same items), also the paired difference
    model - surface over draws with its interval and one-sided p (model above the words-only learner).
    """
    surface = scores.mean(1)
    ci = mean_ci(surface)
    out = {"surface_accuracy": ci.estimate, "surface_low": max(ci.low, 0.0), "surface_high": min(ci.high, 1.0)}
    if model_acc is not None:
        above = paired_test(model_acc, surface, alternative="greater")
        out.update({"vs_surface_diff": above.mean_diff, "vs_surface_low": above.low, "vs_surface_high": above.high,
                    "p_vs_surface": above.p})
    return out


def _others_fields(scores: np.ndarray, model_acc: np.ndarray) -> dict:
    """The other-axes learner's accuracy on `scores` [draws, items] and the paired model - learner test over draws."""
    others = scores.mean(1)
    above = paired_test(model_acc, others, alternative="greater")
    return {"others_accuracy": float(others.mean()), "vs_others_diff": above.mean_diff, "vs_others_low": above.low,
            "vs_others_high": above.high, "p_vs_others": above.p}


def prompt_label_sets(labels: np.ndarray, rng: np.random.Generator) -> list[np.ndarray]:
    """Each axis' labels of one prompt's items [n_items, n_axes], then each axis' labels permuted.

    The shuffled baseline of an axis keeps that axis' label counts: an axis labelling 90 % of
    items alike is matched by a baseline answering the majority label 90 % right, not by another
    axis' (balanced) shuffle.
    """
    labels = np.asarray(labels)
    return [labels[:, a] for a in range(labels.shape[1])] + [rng.permutation(labels[:, a]) for a in range(labels.shape[1])]


def measure_reporting(model, texts: list[str], labels, axis_names: list[str], *, n_values=DEFAULT_N,
                  draws: int = 12, seed: int = 0, label_words: tuple[str, str] = ("0", "1"),
                  batch_size: int = 4, n_test_min: int = 8, groups=None, protocol: str = "strict",
                  max_tokens: int = 8192, plant=None, progress: bool = True) -> ReportingResult:
    """Reporting task over `texts` (the pool split) whose neurofeedback `labels` are [n, n_axes].

    Each draw samples n_max + 1 = max(n_values) + 1 sentences (capped by the pool, its number of
    groups and the model's context) and scores every axis on them, and once with permuted labels.
    Each prompt's labels are also given to the text-only surface learner (`surface`).
    `groups` (one id per text; near-copies share one) keeps two items of a group out of one prompt.
    `protocol` picks the prompt framing (`metalens.probes.prompts.render`); `max_tokens` bounds a
    forward pass's padded tokens (long prompts run one at a time). `plant` (a
    `metalens.probes.planted.PlantedReporter`, for sensitivity checks) adds its edits to every pass.
    """
    labels = np.asarray(labels)
    if labels.ndim != 2 or labels.shape != (len(texts), len(axis_names)):
        raise ValueError(f"labels must be [n_texts={len(texts)}, n_axes={len(axis_names)}]; got {labels.shape}.")
    groups = np.arange(len(texts)) if groups is None else np.asarray(groups).ravel()
    if len(groups) != len(texts):
        raise ValueError(f"{len(groups)} groups for {len(texts)} texts: give one group id per text.")
    n_items = min(max(n_values) + 1, len(np.unique(groups)))
    cand = label_token_ids(model, "report", label_words, protocol)
    rng = np.random.default_rng(seed)
    context = getattr(model.hf.config, "max_position_embeddings", None) or 10**9
    # "As many as the context allows": shrink the prompt until a trial render fits, with slack
    # for sentences longer than the trial ones.
    while n_items > 2:
        trial = render(model, [texts[i] for i in sample_distinct_groups(rng, groups, n_items)], [0] * n_items, "report", label_words,
                       protocol=protocol)
        if len(trial.input_ids) * 1.2 <= context:
            break
        n_items = max(2, min(n_items - 1, int(n_items * context / (1.2 * len(trial.input_ids)))))
    p = np.zeros((len(axis_names), draws, n_items))
    mass = np.zeros_like(p)
    surface = np.zeros_like(p)
    others = np.zeros_like(p)
    others_p1 = other_axes_p1(labels)  # [n_texts, n_axes]
    shuffled = np.zeros((len(axis_names), draws, n_items))
    items = np.zeros((draws, n_items), dtype=int)
    example = ""
    for d in tqdm(range(draws), desc="reporting", disable=not progress):
        idx = items[d] = sample_distinct_groups(rng, groups, n_items)
        sents = [texts[i] for i in idx]
        label_sets = prompt_label_sets(labels[idx], rng)
        for a in range(len(axis_names)):
            surface[a, d] = prompt_surface_scores(sents, label_sets[a])
            others[a, d] = score_predictions(others_p1[idx, a], labels[idx, a])
        prompts = [render(model, sents, lab.tolist(), "report", label_words, protocol=protocol) for lab in label_sets]
        if len(prompts[0].input_ids) > context:
            raise ValueError(f"A prompt of {n_items} items has {len(prompts[0].input_ids)} tokens, over "
                             f"{model.name}'s context of {context}: lower max(n_values).")
        example = example or prompts[0].text
        scored = label_logprobs(model, prompts, cand, batch_size, max_tokens,
                                edits=None if plant is None else plant.edits(model, idx, prompts, cand))
        for k, ((logp, m), lab) in enumerate(zip(scored, label_sets)):
            pc = logp.exp()[torch.arange(n_items), torch.as_tensor(lab)].numpy()
            if k < len(axis_names):
                p[k, d], mass[k, d] = pc, m.numpy()
            else:
                shuffled[k - len(axis_names), d] = pc
    meta = {"draws": draws, "seed": seed, "label_words": list(label_words), "n_items": n_items,
            "n_test_min": n_test_min, "format": "chat" if model.is_chat else "plain", "protocol": protocol,
            "n_groups": len(np.unique(groups)), "one_item_per_group": True}
    if plant is not None:
        meta["planted"] = plant.describe()
    return ReportingResult(list(axis_names), [n for n in n_values if n < n_items], p, shuffled, mass, example, meta, items,
                           surface, others)


def average_reporting(results: list[ReportingResult], layers: list[int]) -> ReportingResult:
    """One `ReportingResult` from runs at several layers on the same items (same texts, groups and
    seed; each layer labels them with its own axes): p(correct), the shuffled baseline, label mass
    and surface scores averaged over layers, so accuracy is that of the layer-mean probability."""
    first = results[0]
    if any(r.axis_names != first.axis_names or not np.array_equal(r.items, first.items) for r in results):
        raise ValueError("Layer runs differ in axes or items: run each layer with the same texts, groups and seed.")
    def mean(name):
        return np.mean([getattr(r, name) for r in results], axis=0)
    meta = {**first.metadata, "layers": list(layers), "averaged_over_layers": True}
    return ReportingResult(first.axis_names, first.n_values, mean("p_correct"), mean("shuffled_p_correct"),
                           mean("label_mass"), first.example_prompt, meta, first.items,
                           mean("surface") if first.surface is not None else None,
                           mean("others") if first.others is not None else None)
