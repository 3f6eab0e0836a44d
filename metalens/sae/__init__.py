"""Sparse dictionaries (SAEs and transcoders) in the community's file formats, scored and trained here.

`SAE` holds the weights (encode / decode / splice); `load_sae` reads SAELens and Gemma Scope
(2) folders and `save_saelens` writes SAELens' layout; `evaluate_sae` scores a dictionary on a
model (variance explained, L0, dead share, CE loss recovered); `train_sae` trains a small one
on captured activations; `run_sae_training` / `run_sae_evaluation` are the `metalens sae train|eval`
workflows (text from `read_corpus`, scores on a held-out split).
"""
from metalens.sae.corpus import read_corpus
from metalens.sae.dictionary import ARCHITECTURES, SAE
from metalens.sae.formats import load_sae, save_saelens
from metalens.sae.metrics import SAEEval, evaluate_sae, splice_edits
from metalens.sae.train import SAETrainConfig, SAETraining, train_sae
from metalens.sae.workflow import SAERun, SAERunConfig, run_sae_evaluation, run_sae_training

__all__ = [
    "ARCHITECTURES",
    "SAE",
    "SAEEval",
    "SAERun",
    "SAERunConfig",
    "SAETrainConfig",
    "SAETraining",
    "evaluate_sae",
    "load_sae",
    "read_corpus",
    "run_sae_evaluation",
    "run_sae_training",
    "save_saelens",
    "splice_edits",
    "train_sae",
]
