"""A planted monitor: stated confidence that follows a correctness signal by a known amount, for the atlas's
sensitivity check.

At the position where the atlas reads one follow-up's options (the confidence digit, KEEP/WITHDRAW or
BET/PASS), the final-norm state is moved so that each option's logit changes by `strength x z x c_option`:
z is the item's driver score (standardised over the items), c is +1/2 for the confident option (9, KEEP,
BET) and -1/2 for the unconfident one (0, WITHDRAW, PASS), the digits in between linearly. So the
confident-minus-unconfident logit difference moves by exactly `strength x z` (before any final-logit
softcap; the step is the minimum-norm solution of the option rows of the unembedding). The plant knows
each item's reading by its token ids (the follow-up prompt after the model's own answer), reads nothing
else, and touches no other prompt: the answer, the other follow-ups and the probe's activations (block
outputs, before the final norm) stay the unplanted model's. Strength 0 installs no hook.

Drivers (`driver_scores`, from the unplanted run's profile of the same items):
- "probe": the atlas's own correctness probe, each item scored by the probe of the outer fold that left it
  out (nested grouped CV), as log-odds. A monitor that says what the model's activations hold.
- "correct": the item's true correctness. An oracle monitor: the instrument's sensitivity with the
  driver's own quality taken out.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass, field

import numpy as np
import torch

import metalens
from metalens.analyses.battery import FOLLOW_UPS, Item, option_reading, render
from metalens.sites import FINAL_NORM

UNIT = ("logits of confident-minus-unconfident option difference (KEEP - WITHDRAW, BET - PASS, or digit 9 - digit 0 "
        "with the digits between tilted linearly; before any final-logit softcap) per SD of the driver score")
DRIVERS = ("probe", "correct")
SIGNALS = {"confidence": "verbal confidence", "keep": "keep/withdraw", "bet": "bet/pass"}  # follow-up -> atlas signal
PROBE = "correctness probe"
__all__ = ["DRIVERS", "SIGNALS", "UNIT", "PlantedMonitor", "driver_scores", "option_tilt"]


def option_tilt(kind: str) -> np.ndarray:
    """[n_options]: each option's share of the planted logit change, +1/2 for the confident option, -1/2 for
    the unconfident one (confidence digits 0..9 linearly from -1/2 to +1/2; KEEP/BET come first)."""
    if kind not in SIGNALS:
        raise ValueError(f"Unknown follow-up {kind!r}: plant one of {list(SIGNALS)}.")
    n = len(FOLLOW_UPS[kind][2])
    tilt = np.linspace(-0.5, 0.5, n)  # digits: 0 (surely wrong) .. 9 (surely right)
    return tilt if kind == "confidence" else tilt[::-1].copy()  # KEEP/WITHDRAW, BET/PASS: the confident one first


def driver_scores(profile: dict, driver: str) -> np.ndarray:
    """[n_items]: the driver of each item of an atlas profile (unplanted), minus its mean over its SD.

    "probe": log-odds of the held-out correctness-probe prediction (`profile["items"][i]["scores"]`);
    "correct": the item's correctness (0/1).
    """
    rows = profile["items"]
    if driver == "probe":
        if PROBE not in rows[0]["scores"]:
            raise ValueError(f"The atlas fit no correctness probe for {profile['model']} "
                             f"({profile.get('probe', {}).get('skipped', 'no probe')}): use the driver 'correct'.")
        p = np.clip(np.array([r["scores"][PROBE] for r in rows], float), 1e-6, 1 - 1e-6)
        raw = np.log(p) - np.log1p(-p)
    elif driver == "correct":
        raw = np.array([r["correct"] for r in rows], float)
    else:
        raise ValueError(f"Unknown driver {driver!r}: use one of {list(DRIVERS)}.")
    sd = raw.std()
    if not np.isfinite(sd) or sd == 0:
        raise ValueError(f"The {driver} driver is the same on every item of {profile['model']} (no spread): "
                         "nothing to plant; use more items or the other driver.")
    return (raw - raw.mean()) / sd


@dataclass
class PlantedMonitor:
    """Moves the `kind` follow-up's option logits by `strength x scores[i] x option_tilt(kind)` at item i's reading.

    items: the atlas's items in order; choices: [n] the option each item's answer chose (the unplanted
    run's, which the plant leaves unchanged); scores: [n] standardised driver (`driver_scores`).
    """

    items: list[Item]
    choices: np.ndarray
    scores: np.ndarray = field(repr=False)
    kind: str = "confidence"
    strength: float = 0.0
    n_shots: int = 2
    driver: str = "probe"

    def __post_init__(self):
        option_tilt(self.kind)  # refuses an unknown follow-up
        if not (len(self.items) == len(self.choices) == len(self.scores)):
            raise ValueError(f"{len(self.items)} items, {len(self.choices)} choices and {len(self.scores)} scores: "
                             "give one of each per item.")
        if not np.isfinite(self.strength) or self.strength < 0:
            raise ValueError(f"strength must be finite and >= 0, not {self.strength!r}.")

    def describe(self) -> dict:
        """What was planted, for results."""
        return {"signal": SIGNALS[self.kind], "follow_up": self.kind, "driver": self.driver,
                "strength": float(self.strength), "unit": UNIT, "site": FINAL_NORM,
                "tilt": [float(c) for c in option_tilt(self.kind)]}

    def readings(self, model) -> dict[tuple[int, ...], tuple[int, list[int]]]:
        """{token ids the atlas runs for item i's follow-up: (i, option token ids)}, as `read_battery` builds them."""
        table: dict = {}
        for i, (item, letter) in enumerate(zip(self.items, self.choices)):
            ids, options = option_reading(model, *render(model, item, self.kind, int(letter), self.n_shots))
            key = tuple(ids)
            if key in table and self.scores[table[key][0]] != self.scores[i]:
                raise ValueError(f"Items {table[key][0]} and {i} ask the same follow-up prompt but have different "
                                 "driver scores: remove the duplicate item.")
            table[key] = (i, options)
        return table

    def step(self, model, options: list[int]) -> torch.Tensor:
        """[d_model] float64: the minimum-norm final-norm step that moves the options' logits by `option_tilt`."""
        weight = model.hf.get_output_embeddings().weight  # [vocab, d_model]
        rows = weight[torch.as_tensor(options, device=weight.device)].detach().double().cpu()  # [n_options, d_model]
        target = torch.as_tensor(option_tilt(self.kind), dtype=torch.float64)  # [n_options]
        return torch.linalg.pinv(rows) @ target

    @contextlib.contextmanager
    def install(self, model):
        """Within the block, every forward pass of `model` carries the monitor (nothing at strength 0)."""
        if self.strength == 0:
            yield self
            return
        table = self.readings(model)
        steps = {opts: self.step(model, list(opts)) for opts in {tuple(o) for _, o in table.values()}}
        pushes = {key: self.strength * float(self.scores[i]) * steps[tuple(opts)] for key, (i, opts) in table.items()}
        rows: list = []  # the current pass's planted rows: (row, read position, step [d_model])

        def see_ids(module, args, kwargs):  # why: hooks see activations only; the readings are known by their ids
            rows.clear()
            ids = kwargs.get("input_ids", args[0] if args else None)
            if ids is None or ids.dim() != 2:
                return None
            mask = kwargs.get("attention_mask")
            lengths = mask.sum(1).tolist() if mask is not None else [ids.shape[1]] * ids.shape[0]
            for r, n in enumerate(lengths):
                key = tuple(ids[r, :int(n)].tolist())  # right padding: the row's tokens come first
                if key in pushes:
                    rows.append((r, int(n) - 1, pushes[key]))
            return None

        def push(hidden):  # final-norm output [batch, pos, d_model]
            if not rows:
                return None
            out = hidden.clone()
            for r, p, delta in rows:
                out[r, p] += delta.to(out.device, out.dtype)
            return out

        handle = model.hf.register_forward_pre_hook(see_ids, with_kwargs=True)
        try:
            with metalens.hooks(model, {FINAL_NORM: push}):
                yield self
        finally:
            handle.remove()
