"""metalens: look inside language models and steer them.

The core: `load_model` (one set of weights, HF / TransformerLens / nnsight views),
`run_with_cache` (the one forward pass with hooks), `capture` (activations at
TransformerLens-named sites, streamed and resumable), `hooks` (read or edit activations
during any forward pass) and `generate` (batched generation with hooks and stop rules;
`fast_generation` makes its compiled fast path the default).
Areas: `metalens.probes`, `metalens.introspect`, `metalens.steering`, `metalens.circuits`,
`metalens.analyses`; shared tasks in `metalens.tasks`.
"""
from metalens import sites
from metalens.activations import Activations
from metalens.capture import capture, capture_batch
from metalens.checkpoints import list_checkpoints, load_checkpoint
from metalens.data import read_jsonl, read_texts, write_jsonl
from metalens.fastgen import fast_generation
from metalens.forward import Cache, run_with_cache
from metalens.generate import Generation, generate
from metalens.hooks import StopForward, hooks
from metalens.loading import cache_dir, default_device, load_model
from metalens.model import Model, library_versions
from metalens.precision import in_float32
from metalens.readout import NextTokenReads, next_token_logprobs
from metalens.registry import DEFAULT_MODEL, EMBEDDED
from metalens.sites import resolve_site, site_names
from metalens.store import iter_shards, load_activations, merge_manifests, read_manifest

__version__ = "0.1.0"

__all__ = [
    "Activations",
    "Cache",
    "DEFAULT_MODEL",
    "EMBEDDED",
    "Generation",
    "Model",
    "NextTokenReads",
    "StopForward",
    "cache_dir",
    "capture",
    "capture_batch",
    "default_device",
    "fast_generation",
    "generate",
    "hooks",
    "in_float32",
    "iter_shards",
    "library_versions",
    "list_checkpoints",
    "load_activations",
    "load_checkpoint",
    "load_model",
    "merge_manifests",
    "next_token_logprobs",
    "read_jsonl",
    "read_manifest",
    "read_texts",
    "resolve_site",
    "run_with_cache",
    "site_names",
    "sites",
    "write_jsonl",
]
