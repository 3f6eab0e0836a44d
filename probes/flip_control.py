"""The paper's 2 x 2 control design (Ji-An et al., 2025, public code): imposed label x shown labels
flipped or not, with the paper's prompt framing (`prompts.render(..., protocol="paper")`).

Each trial draws N examples and one test sentence (distinct groups) and renders four prompts from
them: the examples' true labels or their flips (1 - label), each with imposed label 0 and 1. With
flipped labels, imposing 0 asks for the *high* side of the axis. So the control effect per trial is

    high - low,  high = (s[true, 1] + s[flip, 0]) / 2,  low = (s[true, 0] + s[flip, 1]) / 2

where s is the projection of the measured sentence. A direct effect of the label token itself
("1" vs "0" shifting activations whatever the labels mean) appears once in each of high and low
and cancels; a design without the flip condition (`control.measure_control`) cannot tell it from control.

Our conclusion statistic is the paired d_z of high - low over trials (`metalens.stats.paired_test`);
the paper's unpaired Cohen's d (pooled SD across trials) is reported beside it and labelled so.
The measured activation, as in the authors' code, is the mean over the tokens after the last
assistant-turn tag through the end of the prompt (`Rendered.reply_span`; the reply is left open).
Precision, as in the paper, is |d| on the target over the mean |d| over *all* PCs of the fit split
(given as `pc_axes`), in both versions (unpaired d: the paper's; paired d_z: ours).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from metalens.probes.control import add_control_mde, axis_effects, check_control_inputs, first_line, is_specific, span_means
from metalens.probes.datasets import sample_distinct_groups
from metalens.probes.mde import ALPHA
from metalens.probes.prompts import render
from tqdm.auto import tqdm

import metalens
from metalens.stats import add_holm, cohens_d, paired_test

DESIGN = "2x2: imposed label x shown labels flipped"


def high_low(proj: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(high, low) [trials, ...] from projections [trials, 2 (flip), 2 (imposed), ...]: high is the
    axis' true high side (imposed 1 with true labels, imposed 0 with flipped ones), averaged."""
    return (proj[:, 0, 1] + proj[:, 1, 0]) / 2, (proj[:, 0, 0] + proj[:, 1, 1]) / 2


@dataclass
class FlipControlResult:
    """Projections [n_targets, trials, 2 (flip), 2 (imposed), n_axes] of the controlled sentences,
    and the target shifts on every PC of the fit split (`pc_names`, for precision)."""

    kind: str  # "implicit" or "explicit"
    axis_names: list[str]
    target_names: list[str]
    projections: np.ndarray
    pc_projections: np.ndarray  # [n_targets, trials, 2, 2, n_pcs]
    pc_names: list[str]
    sentences: list  # [target][trial][flip][imposed]
    example_prompt: str
    metadata: dict = field(default_factory=dict)

    def effects(self) -> list[dict]:
        """Per target: the 2 x 2 effect (high - low) on the target with its 95% interval, paired
        d_z on every axis, a one-sided paired t-test on target (Holm across targets), the paper's
        unpaired d, precision over all PCs, the label token's direct effect that the design removes,
        and the test's minimum detectable effect (`mde`).

        The only design that sets verdicts: `controllable` (Holm p < 0.05) and `specific` (on-target d_z
        above |d_z| on every other tested axis, `control.is_specific`).
        """
        rows = []
        for t, target in enumerate(self.target_names):
            proj, pcs = self.projections[t], self.pc_projections[t]
            ok = np.isfinite(proj).all(axis=(1, 2, 3))
            proj, pcs = proj[ok], pcs[ok]
            a_t = self.axis_names.index(target)
            high, low = high_low(proj)  # [trials, n_axes]
            row = axis_effects(target, high, low, self.axis_names, a_t,
                               "one-sided paired t-test over trials of the 2x2 effect (high - low) on the target axis")
            pc_high, pc_low = high_low(pcs)  # [trials, n_pcs]
            pc_dz = np.array([paired_test(pc_high[:, k], pc_low[:, k]).d_z for k in range(pcs.shape[-1])])
            pc_d = np.array([cohens_d(pc_high[:, k], pc_low[:, k]) for k in range(pcs.shape[-1])])
            token = paired_test((proj[:, 0, 1, a_t] + proj[:, 1, 1, a_t]) / 2, (proj[:, 0, 0, a_t] + proj[:, 1, 0, a_t]) / 2)
            noflip = paired_test(proj[:, 0, 1, a_t], proj[:, 0, 0, a_t])
            rows.append({**row, "design": DESIGN,
                         # The paper's precision: |d| on target over mean |d| across all PCs of the fit split.
                         "precision": _ratio(row["d_target"], pc_d), "precision_dz": _ratio(row["dz_target"], pc_dz),
                         "n_precision_pcs": int(pcs.shape[-1]),
                         # What the flip removes: imposed 1 vs 0 whatever the labels mean (the label token's own effect),
                         # and the no-flip contrast a one-condition design would have reported.
                         "label_token_diff": token.mean_diff, "label_token_dz": token.d_z,
                         "noflip_diff": noflip.mean_diff, "noflip_dz": noflip.d_z,
                         "dz_by_pc": pc_dz, "d_by_pc": pc_d})
        rows = add_control_mde(add_holm(rows), DESIGN)
        for row in rows:
            row.update({"cancels_label_token": True, "controllable": bool(row["p_holm"] < ALPHA),
                        "specific": is_specific(row), "verdict": None})
        return rows

    def to_dict(self) -> dict:
        """Everything, JSON-ready (the all-PC projections are summarised by `dz_by_pc` / `d_by_pc`)."""
        return {"kind": self.kind, "design": DESIGN, "axis_names": self.axis_names, "target_names": self.target_names,
                "pc_names": self.pc_names, "projections": self.projections, "effects": self.effects(),
                "sentences": self.sentences, "example_prompt": self.example_prompt, "metadata": self.metadata}


def _ratio(on: float, all_pcs: np.ndarray) -> float:
    base = np.nanmean(np.abs(all_pcs)) if np.isfinite(all_pcs).any() else float("nan")
    return float(abs(on) / base) if np.isfinite(on) and base and np.isfinite(base) else float("nan")


def measure_flip_control(model, layer: int, axes, texts: list[str], labels, targets: list[str], *, pc_axes=None,
                     kind: str = "implicit", n_examples: int = 16, trials: int = 16, seed: int = 0,
                     label_words: tuple[str, str] = ("0", "1"), max_new_tokens: int = 24, batch_size: int = 4,
                     groups=None, plant=None, progress: bool = True) -> FlipControlResult:
    """The 2 x 2 control of each axis in `targets` (names in `axes.names`) under the paper's framing.

    `texts` / `labels` [n, n_axes] are the pool split with its labels; `pc_axes` (from
    `fit_paper_axes(..., pcs="all")`) are the PCs precision compares with (default: `axes`' PCs).
    Implicit control measures the given test sentence in all four prompts; explicit control the
    sentence the model writes (greedy) in each. `groups` keeps two items of a group out of one prompt.
    `plant` (a `metalens.probes.planted.PlantedController`, for sensitivity checks) moves the measured
    replies of its axis' trials in the reading pass.
    """
    labels, groups = check_control_inputs(kind, texts, labels, groups, n_examples)
    if plant is not None and plant.layer != layer:
        raise ValueError(f"The planted controller acts at block {plant.layer}, control reads block {layer}: plant it "
                         "at the block control reads.")
    pc_axes = pc_axes or axes
    rng = np.random.default_rng(seed)
    proj = np.full((len(targets), trials, 2, 2, len(axes.names)), np.nan)
    pc_proj = np.full((len(targets), trials, 2, 2, len(pc_axes.names)), np.nan)
    sentences, example = [], ""
    for t, target in enumerate(tqdm(targets, desc=f"{kind} control (2x2)", disable=not progress)):
        a_t = axes.index(target)
        draws = []  # per trial: (example sentences, their true labels, the test sentence)
        for _ in range(trials):
            idx = sample_distinct_groups(rng, groups, n_examples + 1)
            draws.append(([texts[i] for i in idx[:-1]], labels[idx[:-1], a_t].astype(int), texts[idx[-1]]))
        cells = [(trial, flip, imposed) for trial in range(trials) for flip in (0, 1) for imposed in (0, 1)]

        def shown(trial, flip, draws=draws):
            return (1 - draws[trial][1] if flip else draws[trial][1]).tolist()

        if kind == "implicit":
            written = [draws[trial][2] for trial, _, _ in cells]
        else:  # the model writes the reply after each of the four prompts (greedy, one batched call)
            open_prompts = [render(model, draws[trial][0] + [""], shown(trial, flip) + [imposed], "control", label_words,
                                   open_last=True, protocol="paper").input_ids for trial, flip, imposed in cells]
            written = [first_line(x) for x in
                       metalens.generate(model, open_prompts, max_new_tokens=max_new_tokens, batch_size=batch_size).texts]
        sentences.append([[[written[4 * k + 2 * f + i] for i in (0, 1)] for f in (0, 1)] for k in range(trials)])
        prompts, where = [], []
        for (trial, flip, imposed), sentence in zip(cells, written):
            if sentence:
                prompts.append(render(model, draws[trial][0] + [sentence], shown(trial, flip) + [imposed], "control",
                                      label_words, protocol="paper"))
                where.append((trial, flip, imposed))
        example = example or (prompts[0].text if prompts else "")
        if prompts:
            # The paper's span: after the last assistant-turn tag through the end (the open reply).
            # A planted controller pushes where the design asks for the high side: imposed label XOR flipped.
            edits = None if plant is None else plant.edits(target, [imposed != flip for _, flip, imposed in where])
            means = span_means(model, layer, prompts, -1, batch_size, span="reply", edits=edits)
            for (trial, flip, imposed), row, pc_row in zip(where, axes.project(means).numpy(),
                                                           pc_axes.scores(means).numpy()):
                proj[t, trial, flip, imposed] = row
                pc_proj[t, trial, flip, imposed] = pc_row
    meta = {"layer": layer, "n_examples": n_examples, "trials": trials, "seed": seed, "design": DESIGN,
            "label_words": list(label_words), "format": "chat" if model.is_chat else "plain", "protocol": "paper"}
    if kind == "explicit":
        meta["max_new_tokens"] = max_new_tokens
    if plant is not None:
        meta["planted"] = plant.describe()
    pc_names = [n for n in pc_axes.names if n.startswith("PC")]
    keep = [pc_axes.names.index(n) for n in pc_names]
    return FlipControlResult(kind, list(axes.names), list(targets), proj, pc_proj[..., keep], pc_names, sentences,
                             example, meta)
