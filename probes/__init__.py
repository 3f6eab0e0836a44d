"""probes: linear probes and the neurofeedback paradigm (metacognitive monitoring and control).

`train_probe` / `Probe` fit a logistic-regression probe; `run_probe_sweep` (the `metalens probe`
workflow) and `sweep_layers` probe every layer into a `LayerSweep`. `load_dataset` reads the
shipped labelled sentences (`moral`, `facts`) or your JSONL. `run_neurofeedback` runs the whole
paradigm (target axes from `fit_axes`, or `directions.fit_paper_axes` under `protocol="paper"`; reporting, implicit and explicit control, the metacognitive
space) into a `NeurofeedbackResult`. Plotly figures live in `metalens.probes.figures`; the stages
(`reporting.run_reporting`, `control.run_control`, `space.summarize`) in their own modules.
"""
from metalens.probes import figures
from metalens.probes.datasets import LabelledSet, load_dataset
from metalens.probes.demo import demo
from metalens.probes.directions import Axes, fit_axes
from metalens.probes.neurofeedback import NeurofeedbackConfig, NeurofeedbackResult, run_neurofeedback
from metalens.probes.probe import Probe, train_probe
from metalens.probes.sweep import LayerSweep, ProbeSweepConfig, run_probe_sweep, sweep_layers

__all__ = [
    "Axes", "LabelledSet", "LayerSweep", "NeurofeedbackConfig", "NeurofeedbackResult", "Probe", "ProbeSweepConfig",
    "demo", "figures", "fit_axes", "load_dataset", "run_neurofeedback", "run_probe_sweep", "sweep_layers", "train_probe",
]
