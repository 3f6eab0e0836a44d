"""Sparse dictionaries (SAEs and transcoders) in the community's file formats, scored and trained here.

`SAE` holds the weights (encode / decode / splice); `load_sae` reads SAELens and Gemma Scope
(2) folders and `save_saelens` writes SAELens' layout; `evaluate_sae` scores a dictionary on a
model (variance explained, L0, dead share, CE loss recovered); `train_sae` trains a small one
on captured activations; `run_sae_training` / `run_sae_evaluation` are the `metalens sae train|eval`
workflows (text from `read_corpus`, scores on a held-out split); `feature_cards` builds a
`FeatureCard` per feature (top-activating contexts, logit effect, activation histogram).
"""
from metalens.sae.cards import FeatureCard, feature_cards, load_cards, logit_effect, save_cards
from metalens.sae.corpus import read_corpus
from metalens.sae.dictionary import ARCHITECTURES, SAE
from metalens.sae.formats import load_sae, save_saelens
from metalens.sae.metrics import SAEEval, evaluate_sae, splice_edits
from metalens.sae.train import SAETrainConfig, SAETraining, train_sae
from metalens.sae.workflow import SAERun, SAERunConfig, run_sae_evaluation, run_sae_training

__all__ = [
    "ARCHITECTURES",
    "FeatureCard",
    "SAE",
    "SAEEval",
    "SAERun",
    "SAERunConfig",
    "SAETrainConfig",
    "SAETraining",
    "evaluate_sae",
    "feature_cards",
    "load_cards",
    "load_sae",
    "logit_effect",
    "read_corpus",
    "run_sae_evaluation",
    "run_sae_training",
    "save_cards",
    "save_saelens",
    "splice_edits",
    "train_sae",
]
