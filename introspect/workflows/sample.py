"""`run_sample`: the adaptive sampler against majority voting and best-of-N, by replay (and live)."""
from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path

from metalens.introspect.evaluation.figures import pareto_figure
from metalens.introspect.heads.features import by_task, cached_positions
from metalens.introspect.rollouts.store import rollouts_settings
from metalens.introspect.sampling.comparisons import comparison_rows
from metalens.introspect.sampling.live import live_runs
from metalens.introspect.sampling.sampler import build_pools, out_of_fold_pools, pareto
from metalens.introspect.workflows.common import adapted, load_result, write_results
from metalens.introspect.workflows.train import TrainResult, as_trained, config_dict


@dataclass
class SampleConfig:
    """Settings of `run_sample`: which train run, the token and latency costs, and the optional live run."""

    train: object  # TrainResult, or its folder (its `head/` folder is accepted too)
    rollouts: str | Path | None = None  # default: the rollouts the head was trained on
    alphas: tuple[float, ...] | None = None  # token costs to sweep (default: 0 to 0.1)
    beta: float = 0.0  # cost per decode step (latency)
    every: int = 4  # tokens between checkpoints
    live: int = 0  # also generate for real on this many held-out questions
    live_alphas: tuple[float, ...] = (0.003, 0.01)
    cv: int = 0  # >= 2: also compare on every question, each read by a head trained without its fold
    utility: int = 0  # also run the utility sampler (stop / start / branch) live on this many held-out questions
    # (with cv: on this many of all questions, in fold order, each read by its fold's head)
    utility_alphas: tuple[float, ...] = (0.001, 0.01)  # its token costs
    utility_betas: tuple[float, ...] = (0.0, 0.01)  # its latency costs (per decode step)
    branch: bool = True  # let it branch from running samples (else stop / start only)
    seed: int = 0

    def __post_init__(self):
        self.live_alphas = tuple(self.live_alphas)  # JSON-ready, equal after load
        if not isinstance(self.train, TrainResult):
            self.train = str(self.train)
        self.utility_alphas, self.utility_betas = tuple(self.utility_alphas), tuple(self.utility_betas)
        self.rollouts = None if self.rollouts is None else str(self.rollouts)
        self.alphas = None if self.alphas is None else tuple(self.alphas)
        if self.every < 1:
            raise ValueError(f"every={self.every}: checkpoints need at least one token between them.")
        if self.cv == 1 or self.cv < 0:
            raise ValueError(f"cv={self.cv}: use 0 (no cross-validation) or k >= 2 folds.")


@dataclass
class SampleResult:
    """Accuracy vs mean tokens per question of each method, and the paired comparisons."""

    config: SampleConfig
    majority: list[dict]  # per N: {method, param, accuracy, tokens}
    best_of_n: list[dict]
    pass_at_n: list[dict]
    adaptive: list[dict]  # per (initial, alpha): accuracy, tokens, latency
    paired: list[dict]  # adaptive and best-of-N vs majority@N spending at least as many tokens, per question
    matched: list[dict]  # each adaptive point vs majority interpolated at its mean tokens
    n_tasks: int
    pool_size: int
    n_comparisons: int | None = None  # paired comparisons vs majority made (the Holm family of `paired`)
    cv: dict | None = None  # the same on every question with k-fold heads
    live: list[dict] | None = None  # per live alpha: accuracy, tokens, decode steps, seconds per question
    utility: list[dict] | None = None  # per (alpha, beta): the live utility sampler vs stored baselines
    # the headline of a utility run: per (alpha, beta, baseline) wins / ties / losses, exact sign test, mde
    comparisons: list[dict] | None = None
    metadata: dict | None = None  # the head's

    def data(self) -> dict:
        """What results.json holds."""
        data = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in ("config", "metadata")}
        return {"config": config_dict(self.config), **data}

    def save(self, out: str | Path) -> Path:
        """Write results.json and report.html into `out`."""
        data = self.data()
        sections = [
            # the utility points sit on the figure of the questions they ran on
            ("Accuracy vs tokens (held-out questions)", pareto_figure({**data, "utility": None} if self.cv else data)),
            ("Adaptive sampler vs majority voting at the same mean tokens", self.matched),
            ("Paired per question: adaptive vs majority@N with N the smallest pool spending at least as many tokens",
             [r for r in self.paired if r.get("majority_n")]),
            ("How it was measured", "Pools of fully generated samples are replayed: the sampler's decisions use "
                                    "only the head read on prefixes, and a pruned sample costs the tokens it had."),
        ]
        if self.cv:
            k = self.cv["k"]
            sections += [(f"Accuracy vs tokens, all {self.cv['n_tasks']} questions ({k}-fold heads)",
                          pareto_figure({**self.cv, "utility": self.utility})),
                         (f"{k}-fold, paired per question: adaptive vs majority@N spending at least as many tokens",
                          [r for r in self.cv["paired"] if r.get("majority_n")])]
        if self.live:
            sections.append(("Live adaptive generation on held-out questions", self.live))
        if self.comparisons:
            sections.insert(0, ("Utility sampler vs majority voting and best-of-N at matched tokens, question by "
                                "question: wins / ties / losses, exact two-sided sign test on the non-tied questions "
                                "(Holm over the rows), and the smallest win share it could detect (80 % power)",
                                [{k: v for k, v in r.items() if k != "mde"} | {
                                    "mde (win share)": r["mde"]["value"], "non-tied": r["mde"]["n"],
                                    "mde (accuracy)": r["mde"]["accuracy_difference"]} for r in self.comparisons]))
        if self.utility:
            sections.append(("Utility sampler (continue / stop / start / branch), live, vs the stored samples of the "
                             "same questions at matched tokens (accuracy difference, 95 % bootstrap over questions)",
                             [{k: v for k, v in r.items() if k != "vs"} | {
                                 f"{name} {key}": r["vs"][name].get(key) for name in r["vs"]
                                 for key in ("setting", "accuracy", "difference", "p_holm")} for r in self.utility]))
        return write_results(out, "introspect sample", data, self.metadata or {}, sections)

    @classmethod
    def load(cls, out: str | Path) -> "SampleResult":
        """The result `save` wrote into `out`."""
        return load_result(cls, SampleConfig, out)


def run_sample(model, config: SampleConfig, *, out: str | Path | None = None, progress: bool = True) -> SampleResult:
    """Replay the adaptive sampler and voting baselines on the held-out questions' rollouts.

    With `config.live`, the sampler also generates for real on the first `live` held-out questions
    at each of `live_alphas`; with `config.cv` >= 2, the replay covers every question, each read by
    a head trained without its fold (more questions, tighter intervals).
    """
    trained = as_trained(config.train)
    head = trained.head
    head.check_fits(model)
    records = trained.records(config.rollouts, config.cv)
    settings = rollouts_settings(trained.rollouts_dir())  # how its own rollouts were sampled
    with adapted(model, trained):
        positions = cached_positions(model, records, head.spec, trained.cache(), progress)
        test = by_task(positions, head.metadata["test_tasks"])
        curves = pareto(build_pools(model, records, test, head), config.alphas, config.beta, config.every)
        cv = live = utility = None
        fold_heads: dict = {}
        if config.cv:
            cv_pools = out_of_fold_pools(model, positions, records, head.spec, config.cv, seed=config.seed,
                                         start=head.start, heads=fold_heads)
            cv = {**pareto(cv_pools, config.alphas, config.beta, config.every), "k": config.cv}
        if config.utility:
            from metalens.introspect.sampling.branching import utility_runs

            if config.cv:  # every question (up to `utility`), each read by its fold's head
                tasks = list(fold_heads)[: config.utility]
                pools = cv_pools[: len(tasks)]
            else:
                tasks = sorted(head.metadata["test_tasks"])[: config.utility]
                pools = build_pools(model, records, by_task(positions, tasks), head)
            utility = utility_runs(model, head, records, pools, tasks, config.utility_alphas, config.utility_betas,
                                   config.every, config.seed, config.branch, progress=progress,
                                   heads=fold_heads or None, settings=settings)
        if config.live:
            live = live_runs(model, head, records, head.metadata["test_tasks"][: config.live], config.live_alphas,
                             config.beta, config.every, config.seed, settings=settings)
    comparisons = comparison_rows(utility) if utility else None
    result = SampleResult(config=config, cv=cv, live=live, utility=utility, comparisons=comparisons,
                          metadata=head.metadata, **curves)
    if out is not None:
        result.save(out)
    return result
