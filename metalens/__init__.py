"""metalens: look inside language models and steer them.

The core: `load_model` (one set of weights, HF / TransformerLens / nnsight views),
`capture` (activations at TransformerLens-named sites, streamed and resumable) and
`hooks` (read or edit activations during any forward pass).
"""
from metalens.activations import Activations
from metalens.capture import capture, capture_batch
from metalens.data import read_jsonl, read_texts, write_jsonl
from metalens.hooks import StopForward, hooks
from metalens.loading import cache_dir, default_device, load_model
from metalens.model import Model, library_versions
from metalens.registry import DEFAULT_MODEL, EMBEDDED
from metalens.sites import resolve_site, site_names
from metalens.store import iter_shards, load_activations, merge_manifests, read_manifest

__version__ = "0.1.0"

__all__ = [
    "Activations",
    "DEFAULT_MODEL",
    "EMBEDDED",
    "Model",
    "StopForward",
    "cache_dir",
    "capture",
    "capture_batch",
    "default_device",
    "hooks",
    "iter_shards",
    "library_versions",
    "load_activations",
    "load_model",
    "merge_manifests",
    "read_jsonl",
    "read_manifest",
    "read_texts",
    "resolve_site",
    "site_names",
    "write_jsonl",
]
