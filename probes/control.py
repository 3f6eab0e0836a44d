"""The control tasks: can the model move its own activations along a target axis on request?

Prompts show N (label, sentence) examples whose labels come from the target axis, then impose a
label on one more item. Implicit control: the item's sentence is given, and we read how that
same sentence's activations shift with the imposed label. Explicit control: the model writes the
sentence (greedy), and we read the activations of what it wrote. Each trial uses the same
examples (and, for implicit control, the same sentence) for both imposed labels, so the
comparison is paired: the effect size every conclusion rests on is the paired d_z =
mean(diff) / sd(diff) of the per-trial shift (imposed 1 - imposed 0). The paper's Cohen's d
(unpaired: pooled SD across trials, which is dominated by differences between sentences) is
reported beside it. Both are measured on every axis, so on-target control can be told from a
general shift. A prompt never holds two items of one group (near-copies).

This design varies only the imposed label, so its shift includes the label token's own push ("1"
vs "0" moving activations whatever the labels mean): it is reported as a *shift*, and its rows set
no `controllable` / `specific` verdict (None, with `verdict` saying why). Only the 2 x 2 flip design
(`flip_control`), which cancels that push, sets them.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from tqdm.auto import tqdm

import metalens
from metalens.probes.datasets import sample_distinct_groups
from metalens.probes.mde import ALPHA, paired_mde
from metalens.probes.prompts import Rendered, batches, render
from metalens.sites import resid_post
from metalens.stats import add_holm, cohens_d, paired_test

LABEL_ONLY = "label only: imposed label 1 vs 0 on the same examples and sentence (the label token's push not cancelled)"
NO_VERDICT = ("none: this design varies only the imposed label, so the shift includes the label token's own push; "
              "controllable / specific come only from the 2x2 flip design (protocol 'paper'), which cancels it")


@torch.inference_mode()
def span_means_by_layer(model, layers: list[int], prompts: list[Rendered], item: int = -1, batch_size: int = 4,
                        max_tokens: int = 8192, span: str = "sentence", edits=None) -> dict[int, torch.Tensor]:
    """{layer: [n_prompts, d_model]}: the mean residual stream after each block in `layers` over the
    tokens of sentence `item` in each prompt (`span="sentence"`), or over each prompt's `reply_span`
    (`span="reply"`: the paper protocol's, after the last assistant-turn tag through the end), all
    layers from one forward pass per batch. `edits` (sensitivity checks: `PlantedController.edits`), called
    per batch with (prompt indices [batch], span weights [batch, pos]), gives the `{site: fn}` active
    during that batch's pass."""
    if span not in ("sentence", "reply"):
        raise ValueError(f"span must be 'sentence' or 'reply', not {span!r}.")
    if span == "reply" and any(r.reply_span is None for r in prompts):
        raise ValueError("span='reply' needs prompts rendered with protocol='paper' that end in a reply.")
    sites = {layer: resid_post(model.check_layer(layer)) for layer in layers}
    out = {layer: torch.zeros(len(prompts), model.d_model) for layer in layers}
    for chunk_idx in batches(prompts, batch_size, max_tokens):
        chunk = [prompts[i] for i in chunk_idx]
        ids, mask = model.pad([r.input_ids for r in chunk])  # right padding keeps render's spans
        weights = torch.zeros(ids.shape)  # [batch, pos]: 1 / span length on the span, else 0
        for j, r in enumerate(chunk):
            a, b = r.sentence_spans[item] if span == "sentence" else r.reply_span
            weights[j, a:b] = 1.0 / (b - a)
        cache = metalens.run_with_cache(model, ids, mask, sites=list(sites.values()),
                                        edits=None if edits is None else edits(chunk_idx, weights))
        for layer, site in sites.items():
            resid = cache[site]  # [batch, pos, d_model]
            out[layer][chunk_idx] = torch.einsum("bp,bpd->bd", weights.to(resid.device, resid.dtype), resid).float().cpu()
    return out


def span_means(model, layer: int, prompts: list[Rendered], item: int = -1, batch_size: int = 4,
               span: str = "sentence", edits=None) -> torch.Tensor:
    """Mean residual stream after block `layer` over the tokens of sentence `item` in each prompt (or
    its `reply_span`, `span="reply"`), [n_prompts, d_model]; `edits` as `span_means_by_layer` takes them."""
    return span_means_by_layer(model, [layer], prompts, item, batch_size, span=span, edits=edits)[layer]


@dataclass
class ControlResult:
    """Projections [n_targets, trials, 2 (imposed 0, 1), n_axes] of the controlled sentences."""

    kind: str  # "implicit" or "explicit"
    axis_names: list[str]
    target_names: list[str]
    projections: np.ndarray
    sentences: list  # [target][trial][imposed] the measured sentence (generated ones for explicit)
    example_prompt: str
    metadata: dict = field(default_factory=dict)

    def effects(self) -> list[dict]:
        """Per target: the paired shift (imposed 1 - imposed 0) on the target axis with its 95%
        interval (`shift`, `shift_low`, `shift_high`, `shift_dz`; also under the names both designs
        share: `diff`, `dz_target`, ...), paired d_z on target and on every other axis, a one-sided
        paired t-test on the target axis (Holm-corrected across targets), the paper's unpaired Cohen's
        d on and off target, and the test's minimum detectable shift (`mde`).

        No verdict: `controllable` and `specific` are None (`verdict` says why), because the shift of
        this design includes the label token's own push.
        """
        rows = []
        for t, target in enumerate(self.target_names):
            proj = self.projections[t]  # [trials, 2, n_axes]
            ok = np.isfinite(proj).all(axis=(1, 2))
            proj = proj[ok]
            a_t = self.axis_names.index(target)
            rows.append(axis_effects(target, proj[:, 1], proj[:, 0], self.axis_names, a_t,
                                     "one-sided paired t-test over trials of the target-axis shift"))
        rows = add_control_mde(add_holm(rows), LABEL_ONLY)
        for row in rows:
            row.update({"shift": row["diff"], "shift_low": row["diff_low"], "shift_high": row["diff_high"],
                        "shift_dz": row["dz_target"], "shift_p_holm": row["p_holm"],
                        "design": LABEL_ONLY, "cancels_label_token": False,
                        "controllable": None, "specific": None, "verdict": NO_VERDICT})
        return rows

    def to_dict(self) -> dict:
        """Everything, JSON-ready."""
        return {"kind": self.kind, "axis_names": self.axis_names, "target_names": self.target_names,
                "projections": self.projections, "effects": self.effects(), "sentences": self.sentences,
                "example_prompt": self.example_prompt, "metadata": self.metadata}


def first_line(text: str) -> str:
    """The first non-empty line of generated text, stripped: the sentence a model wrote."""
    return text.strip().split("\n")[0].strip()


def axis_effects(target: str, high: np.ndarray, low: np.ndarray, axis_names: list[str], a_t: int, test: str) -> dict:
    """Effect row of one control target from paired projections `high`/`low` [trials, n_axes]: the
    on-target paired d_z (one-sided t, high above low) beside |d_z| on every other axis, and the
    paper's unpaired d on and off target. No verdict: the design decides whether one may be drawn."""
    tests = [paired_test(high[:, a], low[:, a], alternative="greater") for a in range(len(axis_names))]
    dzs = [tt.d_z for tt in tests]
    ds = [cohens_d(high[:, a], low[:, a]) for a in range(len(axis_names))]
    on = tests[a_t]
    off_dz = [abs(d) for a, d in enumerate(dzs) if a != a_t and not np.isnan(d)]
    off_d = [abs(d) for a, d in enumerate(ds) if a != a_t and np.isfinite(d)]
    return {"target": target,
            "dz_target": on.d_z, "dz_off_target_mean_abs": float(np.mean(off_dz)) if off_dz else float("nan"),
            "dz_off_target_max_abs": float(np.max(off_dz)) if off_dz else float("nan"),
            "diff": on.mean_diff, "diff_low": on.low, "diff_high": on.high,
            "p": on.p, "n_trials": len(high), "test": test,
            "diffs": high[:, a_t] - low[:, a_t],  # per trial, on target: what the MDE is computed from
            "d_target": ds[a_t], "d_off_target_mean_abs": float(np.mean(off_d)) if off_d else float("nan"),
            "d_off_target_max_abs": float(np.max(off_d)) if off_d else float("nan"),
            "d_is": "unpaired Cohen's d (the paper's): pooled SD across trials, not the paired effect",
            "dz_by_axis": dict(zip(axis_names, dzs)), "d_by_axis": dict(zip(axis_names, ds))}


def add_control_mde(rows: list[dict], design: str, alpha: float = ALPHA) -> list[dict]:
    """Give each Holm-corrected effect row its `mde` (the smallest on-target mean shift, and d_z, the
    one-sided paired t-test over its trials detects at 80 % power and alpha / n_comparisons); drops
    the per-trial `diffs` it is computed from."""
    for row in rows:
        row["mde"] = paired_mde(row.pop("diffs"), row["n_comparisons"], f"paired t over trials ({design})",
                                "projection on the target axis", alpha)
    return rows


def is_specific(row: dict) -> bool:
    """On-target paired d_z above |d_z| on every other measured axis (a label-driven shift shows on many)."""
    on, off = row["dz_target"], row["dz_off_target_max_abs"]
    return bool(np.isfinite(on) and np.isfinite(off) and on > off)


def check_control_inputs(kind: str, texts, labels, groups, n_examples: int) -> tuple[np.ndarray, np.ndarray]:
    """(labels, groups) as arrays after checking a control run's inputs; groups default to one per text."""
    if kind not in ("implicit", "explicit"):
        raise ValueError(f"kind must be 'implicit' or 'explicit', not '{kind}'.")
    groups = np.arange(len(texts)) if groups is None else np.asarray(groups).ravel()
    if len(groups) != len(texts):
        raise ValueError(f"{len(groups)} groups for {len(texts)} texts: give one group id per text.")
    if n_examples + 1 > len(np.unique(groups)):
        raise ValueError(f"n_examples={n_examples} needs more than {len(np.unique(groups))} pool sentences "
                         "(of distinct groups).")
    return np.asarray(labels), groups


def measure_control(model, layer: int, axes, texts: list[str], labels, targets: list[str], *,
                kind: str = "implicit", n_examples: int = 16, trials: int = 16, seed: int = 0,
                label_words: tuple[str, str] = ("0", "1"), max_new_tokens: int = 24,
                batch_size: int = 4, groups=None, progress: bool = True) -> ControlResult:
    """Implicit or explicit control of each axis in `targets` (names in `axes.names`).

    `texts` / `labels` [n, n_axes] are the pool split with its neurofeedback labels; `groups`
    (one id per text; near-copies share one) keeps two items of a group out of one prompt.
    """
    labels, groups = check_control_inputs(kind, texts, labels, groups, n_examples)
    rng = np.random.default_rng(seed)
    proj = np.full((len(targets), trials, 2, len(axes.names)), np.nan)
    sentences, example = [], ""
    for t, target in enumerate(tqdm(targets, desc=f"{kind} control", disable=not progress)):
        a_t = axes.index(target)
        draws = []  # per trial: (example sentences, their labels, the test sentence)
        for _ in range(trials):
            idx = sample_distinct_groups(rng, groups, n_examples + 1)
            draws.append(([texts[i] for i in idx[:-1]], labels[idx[:-1], a_t].tolist(), texts[idx[-1]]))
        if kind == "implicit":
            pairs = [[test, test] for _, _, test in draws]
        else:  # the model writes the sentence after each imposed label (greedy, one batched call)
            open_prompts = [render(model, ex_s + [""], ex_l + [imposed], "control", label_words, open_last=True).input_ids
                            for ex_s, ex_l, _ in draws for imposed in (0, 1)]
            written = metalens.generate(model, open_prompts, max_new_tokens=max_new_tokens, batch_size=batch_size).texts
            pairs = [[first_line(written[2 * k]), first_line(written[2 * k + 1])] for k in range(trials)]
        sentences.append(pairs)
        prompts, where = [], []
        for trial, ((ex_s, ex_l, _), pair) in enumerate(zip(draws, pairs)):
            for imposed, sentence in enumerate(pair):
                if sentence:
                    prompts.append(render(model, ex_s + [sentence], ex_l + [imposed], "control", label_words))
                    where.append((trial, imposed))
        example = example or (prompts[0].text if prompts else "")
        if prompts:
            means = span_means(model, layer, prompts, -1, batch_size)
            for (trial, imposed), row in zip(where, axes.project(means).numpy()):
                proj[t, trial, imposed] = row
    meta = {"layer": layer, "n_examples": n_examples, "trials": trials, "seed": seed,
            "label_words": list(label_words), "format": "chat" if model.is_chat else "plain"}
    if kind == "explicit":
        meta["max_new_tokens"] = max_new_tokens
    return ControlResult(kind, list(axes.names), list(targets), proj, sentences, example, meta)
