"""The introspection workflows, each `run_x(model, config, *, out=None, progress=True) -> XResult` with
`save(dir)` / `load(dir)`: train a head (`run_train`), score it (`run_eval`), spend samples with it
(`run_sample`) and compare heads of several modes on the same questions (`run_compare`). Evaluation,
sampling and comparison take a `TrainResult`, or the folder `run_train` wrote."""
from metalens.introspect.workflows.compare import CompareConfig, CompareResult, run_compare
from metalens.introspect.workflows.eval import EvalConfig, EvalResult, run_eval
from metalens.introspect.workflows.sample import SampleConfig, SampleResult, run_sample
from metalens.introspect.workflows.train import TrainConfig, TrainResult, run_train

__all__ = [
    "CompareConfig", "CompareResult", "EvalConfig", "EvalResult", "SampleConfig", "SampleResult", "TrainConfig",
    "TrainResult", "run_compare", "run_eval", "run_sample", "run_train",
]
