"""probes: linear probes and the neurofeedback paradigm (metacognitive monitoring and control).

Workflows (`run_x(model, config, *, out=None, progress=True)`): `run_probe_sweep` (`metalens probe`)
probes every layer into a `LayerSweep`; `run_neurofeedback` (`metalens neurofeedback`) runs the whole
paradigm into a `NeurofeedbackResult`. Pieces: `train_probe` / `Probe`, `sweep_layers`, `group_folds`,
`load_dataset` (shipped `moral`, `facts`, or your file), `fit_axes` / `Axes`, and the stages
`measure_reporting`, `measure_control`, `measure_flip_control`. Plotly figures in `metalens.probes.figures`.
Sensitivity (`metalens sensitivity neurofeedback [--stage control]`), in `metalens.probes.sensitivity`:
`run_reporting_sensitivity` with a planted reporter and `run_control_sensitivity` with a planted controller
(2x2 flip design), both from `metalens.probes.planted`. SAE features as axes (`NeurofeedbackConfig(sae=DIR)`):
`metalens.probes.features` (`sae_axes`, `select_features`).
"""
from metalens.probes import figures
from metalens.probes.control import measure_control
from metalens.probes.datasets import LabelledSet, load_dataset
from metalens.probes.demo import demo
from metalens.probes.directions import Axes, fit_axes
from metalens.probes.flip_control import measure_flip_control
from metalens.probes.neurofeedback import NeurofeedbackConfig, NeurofeedbackResult, run_neurofeedback
from metalens.probes.probe import Probe, group_folds, train_probe
from metalens.probes.reporting import ReportingResult, measure_reporting
from metalens.probes.sweep import LayerSweep, ProbeSweepConfig, run_probe_sweep, sweep_layers

__all__ = [
    "Axes", "LabelledSet", "LayerSweep", "NeurofeedbackConfig", "NeurofeedbackResult", "Probe", "ProbeSweepConfig",
    "ReportingResult", "demo", "figures", "fit_axes", "group_folds", "load_dataset", "measure_control",
    "measure_flip_control", "measure_reporting", "run_neurofeedback", "run_probe_sweep", "sweep_layers", "train_probe",
]
