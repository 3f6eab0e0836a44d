"""Spending samples with the head: the prune-only rule (`decide`) and the utility sampler
(`choose_actions`: continue / stop / start / branch), replayed on stored rollouts (`pareto`) or run
live on one `CohortDecoder` (`adaptive_generate`, `utility_generate`); stored pools re-read by an oracle
head of known quality (`oracle_pools`)."""
from metalens.introspect.sampling.branching import utility_generate, utility_runs
from metalens.introspect.sampling.cohort import Cohort, CohortDecoder, draw
from metalens.introspect.sampling.live import AdaptiveResult, adaptive_generate, live_runs
from metalens.introspect.sampling.oracle import oracle_pools, reading_quality, reordered
from metalens.introspect.sampling.policy import decide
from metalens.introspect.sampling.sampler import PoolSample, build_pools, out_of_fold_pools, pareto
from metalens.introspect.sampling.utility import Reading, choose_actions, set_utility

__all__ = [
    "AdaptiveResult", "Cohort", "CohortDecoder", "PoolSample", "Reading", "adaptive_generate", "build_pools",
    "choose_actions", "decide", "draw", "live_runs", "oracle_pools", "out_of_fold_pools", "pareto",
    "reading_quality", "reordered", "set_utility", "utility_generate", "utility_runs",
]
