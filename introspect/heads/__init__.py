"""The reserved-logit head: its bins, the hidden states it reads, and its three training modes.

`ReservedHead` is K never-used unembedding rows read as a joint (reward x remaining-length)
distribution; `train_head` fits only those rows (mode head), `train_lora` adds LoRA adapters and
`train_full` trains every weight (each with a KL to the frozen model); `relabel_with_head` is the
value-label stage; `Drift` measures how far a trained mode moved the normal vocabulary.
"""
from metalens.introspect.heads.bins import BinSpec, fitted_edges, geometric_edges, prefix_labels
from metalens.introspect.heads.drift import Drift
from metalens.introspect.heads.features import (Positions, by_task, cached_positions, final_hidden, final_states,
                                                flatten, rollout_positions)
from metalens.introspect.heads.full import FullConfig, FullWeights, train_full, weights_applied
from metalens.introspect.heads.head import HeadReadout, ReservedHead, ReservedMask, reserved_block
from metalens.introspect.heads.lora import LoraAdapter, adapter_applied, train_lora
from metalens.introspect.heads.train import shuffled, train_head
from metalens.introspect.heads.values import relabel_with_head

__all__ = [
    "BinSpec", "Drift", "FullConfig", "FullWeights", "HeadReadout", "LoraAdapter", "Positions", "ReservedHead",
    "ReservedMask", "adapter_applied", "by_task", "cached_positions", "final_hidden", "final_states", "fitted_edges",
    "flatten", "geometric_edges", "prefix_labels", "relabel_with_head", "reserved_block", "rollout_positions",
    "shuffled", "train_full", "train_head", "train_lora", "weights_applied",
]
