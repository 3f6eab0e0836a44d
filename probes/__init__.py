"""probes: linear probes and the neurofeedback paradigm (metacognitive monitoring and control).

Workflows (`run_x(model, config, *, out=None, progress=True)`): `run_probe_sweep` (`metalens probe`)
probes every layer into a `LayerSweep`; `run_neurofeedback` (`metalens neurofeedback`) runs the whole
paradigm into a `NeurofeedbackResult`. Pieces: `train_probe` / `Probe`, `sweep_layers`, `group_folds`,
`load_dataset` (shipped `moral`, `facts`, or your file), `fit_axes` / `Axes`, and the stages
`measure_reporting`, `measure_control`, `measure_flip_control`. Plotly figures in `metalens.probes.figures`.
`run_reporting_sensitivity` (`metalens sensitivity neurofeedback`) plants a reporter of one axis
(`PlantedReporter`) at several strengths and gives the pipeline's detection curve.
"""
from metalens.probes import figures
from metalens.probes.control import measure_control
from metalens.probes.datasets import LabelledSet, load_dataset
from metalens.probes.demo import demo
from metalens.probes.directions import Axes, fit_axes
from metalens.probes.flip_control import measure_flip_control
from metalens.probes.neurofeedback import NeurofeedbackConfig, NeurofeedbackResult, run_neurofeedback
from metalens.probes.planted import PlantedReporter
from metalens.probes.probe import Probe, group_folds, train_probe
from metalens.probes.reporting import ReportingResult, measure_reporting
from metalens.probes.sensitivity import ReportingSensitivityConfig, run_reporting_sensitivity
from metalens.probes.sweep import LayerSweep, ProbeSweepConfig, run_probe_sweep, sweep_layers

__all__ = [
    "Axes", "LabelledSet", "LayerSweep", "NeurofeedbackConfig", "NeurofeedbackResult", "PlantedReporter", "Probe",
    "ProbeSweepConfig", "ReportingResult", "ReportingSensitivityConfig", "demo", "figures", "fit_axes", "group_folds",
    "load_dataset", "measure_control", "measure_flip_control", "measure_reporting", "run_neurofeedback",
    "run_probe_sweep", "run_reporting_sensitivity", "sweep_layers", "train_probe",
]
