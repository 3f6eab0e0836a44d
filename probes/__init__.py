"""probes: linear probes and the neurofeedback paradigm (metacognitive monitoring and control).

`train` / `Probe` / `sweep_layers` fit and sweep logistic-regression probes; `load_dataset`
reads the shipped labelled sentences (`moral`, `facts`) or your JSONL; `fit_axes` builds the
target axes (PCs and the logistic-regression axis) whose median split gives neurofeedback
labels; `run_reporting` and `run_control` are the monitoring and control tasks;
`run_neurofeedback` runs them all and writes results.json + report.html. (The `introspect`
subpackage is separate and imported on demand.)
"""
from metalens.probes.control import ControlResult, run_control
from metalens.probes.datasets import SHIPPED, LabelledSet, load_dataset
from metalens.probes.demo import demo
from metalens.probes.directions import Axes, fit_axes, split_indices
from metalens.probes.neurofeedback import NeurofeedbackConfig, NeurofeedbackResult, run_neurofeedback
from metalens.probes.prompts import render
from metalens.probes.reporting import ReportingResult, run_reporting
from metalens.probes.space import summarize
from metalens.probes.sweep import LayerSweep, sweep_layers
from metalens.probes.train import Probe, train

__all__ = [
    "Axes", "ControlResult", "LabelledSet", "LayerSweep", "NeurofeedbackConfig", "NeurofeedbackResult",
    "Probe", "ReportingResult", "SHIPPED", "demo", "fit_axes", "load_dataset", "render", "run_control",
    "run_neurofeedback", "run_reporting", "split_indices", "summarize", "sweep_layers", "train",
]
