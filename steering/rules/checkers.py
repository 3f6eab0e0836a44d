"""Rule checkers (patterns, or a probe on the model's own activations) and adherence with a CI."""
from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import torch

import metalens
from metalens import sites
from metalens.stats import wilson_ci
from metalens.steering.rules.library import Rule


@dataclass
class Adherence:
    """Fraction of responses that follow a rule, with a Wilson 95 % interval."""

    rate: float
    low: float
    high: float
    n: int

    def to_dict(self) -> dict:
        """JSON-ready fields."""
        return dict(self.__dict__)


def adherence(flags) -> Adherence:
    """Adherence rate of booleans with a Wilson score interval (95 %, `metalens.stats.wilson_ci`)."""
    flags = [bool(f) for f in flags]
    if not flags:
        raise ValueError("No responses to score: adherence needs at least one.")
    ci = wilson_ci(sum(flags), len(flags))
    return Adherence(ci.estimate, ci.low, ci.high, ci.n)


class PatternChecker:
    """Follows the rule when any keyword or the regex matches and the `forbid` regex does not."""

    def __init__(self, keywords=(), regex: str | None = None, forbid: str | None = None):
        if not keywords and not regex and not forbid:
            raise ValueError("A pattern checker needs keywords, a regex or a forbid regex.")
        parts = [r"\b" + re.escape(k) + r"\b" for k in keywords] + ([regex] if regex else [])
        self.require = re.compile("|".join(parts), re.IGNORECASE) if parts else None
        self.forbid = re.compile(forbid, re.IGNORECASE) if forbid else None

    def __call__(self, texts: list[str]) -> list[bool]:
        """One bool per text: does it follow the rule?"""
        return [(self.require is None or bool(self.require.search(t)))
                and not (self.forbid is not None and self.forbid.search(t)) for t in texts]


class ProbeChecker:
    """Logistic probe on the model's own mean residual activations, fit on rule-following vs violating texts.

    The model is run unsteered (no hooks), so the probe judges the text, not the steering.
    """

    def __init__(self, model, layer: int | None = None, threshold: float = 0.5, C: float = 1.0):
        self.model = model
        self.layer = model.check_layer(layer if layer is not None else model.n_layers // 2)
        self.threshold = threshold
        self.C = C
        self.clf_ = None

    def _features(self, texts: list[str]) -> np.ndarray:
        site = sites.resid_post(self.layer)
        acts = metalens.capture(self.model, texts, [site], positions="mean", progress=False, dtype=torch.float32)
        return acts[site].numpy()

    def fit(self, positive: list[str], negative: list[str]) -> "ProbeChecker":
        """Fit on texts that follow (positive) and violate (negative) the rule."""
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        if not positive or not negative:
            raise ValueError("ProbeChecker.fit needs both positive and negative texts.")
        x = np.concatenate([self._features(positive), self._features(negative)])
        y = np.array([1] * len(positive) + [0] * len(negative))
        self.clf_ = make_pipeline(StandardScaler(), LogisticRegression(C=self.C, max_iter=2000)).fit(x, y)
        return self

    def scores(self, texts: list[str]) -> np.ndarray:
        """Probability that each text follows the rule."""
        if self.clf_ is None:
            raise RuntimeError("Fit the probe first: ProbeChecker(model).fit(positive, negative).")
        texts = [t if t.strip() else " " for t in texts]
        return self.clf_.predict_proba(self._features(texts))[:, 1]

    def __call__(self, texts: list[str]) -> list[bool]:
        """One bool per text: does the probe say it follows the rule?"""
        return [bool(s >= self.threshold) for s in self.scores(texts)]


def checker_for(rule: Rule, model=None, positive=None, negative=None):
    """The rule's pattern checker; a probe checker on `model` fit on the pairs if it has no patterns."""
    if rule.keywords or rule.regex or rule.forbid:
        return PatternChecker(rule.keywords, rule.regex, rule.forbid)
    if model is None or not positive or not negative:
        raise ValueError(
            f"Rule '{rule.name}' has no keywords or regex to check it by: pass keywords/regex, or a model "
            "and pairs to fit a ProbeChecker."
        )
    return ProbeChecker(model).fit(positive, negative)
