"""`load_model`: embedded names, local directories and hub ids, with a one-time GGUF conversion cache."""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
from pathlib import Path

import torch

from metalens.model import Model
from metalens.registry import EMBEDDED, EmbeddedModel

CACHE_ENV = "METALENS_CACHE"
_STAMP = "metalens-conversion.json"


def cache_dir() -> Path:
    """Root of metalens' cache: $METALENS_CACHE, else ~/.cache/metalens."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "metalens")


def default_device() -> str:
    """'cuda' where a GPU is visible, else 'cpu'."""
    return "cuda" if torch.cuda.is_available() else "cpu"


_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def _default_dtype(device: str | torch.device | None, device_map) -> torch.dtype:
    on_gpu = device_map is not None or str(device).startswith("cuda")
    return torch.bfloat16 if on_gpu else torch.float32


@contextlib.contextmanager
def _file_lock(path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)  # several processes may load the same model at once
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def converted_dir(spec: EmbeddedModel) -> Path:
    """Directory of safetensors + tokenizer converted once from the model's GGUF."""
    target = cache_dir() / "models" / spec.name
    if (target / _STAMP).exists():
        return target
    gguf_file = spec.gguf_path()
    with _file_lock(cache_dir() / "models" / f".{spec.name}.lock"):
        if (target / _STAMP).exists():  # another process converted it while we waited
            return target
        from transformers import AutoModelForCausalLM, AutoTokenizer

        try:
            import gguf  # noqa: F401  (transformers reads GGUF through it)
        except ModuleNotFoundError as err:
            raise ModuleNotFoundError(
                "Reading GGUF weights needs the 'gguf' package: pip install gguf"
            ) from err
        print(f"[metalens] converting {gguf_file.name} to safetensors under {target} (once)...")
        tmp = target.with_name(target.name + ".partial")
        shutil.rmtree(tmp, ignore_errors=True)
        tokenizer = AutoTokenizer.from_pretrained(str(gguf_file.parent), gguf_file=gguf_file.name)
        hf = AutoModelForCausalLM.from_pretrained(
            str(gguf_file.parent), gguf_file=gguf_file.name, dtype=torch.float32
        )
        # The weights are dequantised now; drop the GGUF quantiser so they serialise as plain tensors.
        hf.hf_quantizer = None
        if hasattr(hf.config, "quantization_config"):
            del hf.config.quantization_config
        hf.config.architectures = [spec.architecture]
        hf.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        stamp = {"source": str(gguf_file), "bytes": gguf_file.stat().st_size, "revision": spec.revision}
        (tmp / _STAMP).write_text(json.dumps(stamp, indent=2))
        shutil.rmtree(target, ignore_errors=True)
        os.replace(tmp, target)
    return target


RANDOM_PREFIX = "random:"
# random:NAME -> (metalens.testing builder, its argument): tiny ones for tests, real shapes for benches
RANDOM_TINY = {"tiny-gemma3": "gemma3", "tiny-llama": "llama"}
_WEIGHTS = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json")
_TOKENIZER = ("tokenizer.json", "tokenizer.model", "vocab.json", "tokenizer_config.json")


def random_names() -> list[str]:
    """Every `random:` model name `load_model` accepts."""
    from metalens.testing import RANDOM_CONFIGS

    return [RANDOM_PREFIX + n for n in [*RANDOM_TINY, *RANDOM_CONFIGS]]


def _random_model(name: str, device, dtype) -> Model:
    from metalens.testing import RANDOM_CONFIGS, random_model, tiny_model

    key = name.removeprefix(RANDOM_PREFIX)
    if key in RANDOM_TINY:
        model = tiny_model(RANDOM_TINY[key], device=str(device or "cpu"), dtype=dtype)
    elif key in RANDOM_CONFIGS:
        model = random_model(key, device=str(device or default_device()), dtype=dtype)
    else:
        raise ValueError(f"Unknown random model '{name}': use one of {random_names()}.")
    model.name = name
    return model


def check_model_dir(path: Path) -> None:
    """Refuse a local folder that lacks a model's config, weights or tokenizer, saying what is missing."""
    missing = []
    if not (path / "config.json").is_file():
        missing.append("config.json")
    if not any((path / f).is_file() for f in _WEIGHTS) and not any(path.glob("*.safetensors")):
        missing.append("weights (model.safetensors)")
    if not any((path / f).is_file() for f in _TOKENIZER):
        missing.append("a tokenizer (tokenizer.json or tokenizer.model)")
    if missing:
        hint = (" It holds a LoRA adapter: load it with metalens.load_checkpoint." if (path / "adapter_config.json")
                .is_file() else "")
        raise ValueError(f"--model {path} is a folder without a model: it lacks {', '.join(missing)}.{hint} Point "
                         "--model at a folder saved with save_pretrained (model and tokenizer), an embedded name "
                         f"{sorted(EMBEDDED)} or a hub id.")


def _resolve(name: str) -> tuple[str, str | None, str | None]:
    """(path or hub id to load from, upstream hub id, revision note)."""
    if name in EMBEDDED:
        spec = EMBEDDED[name]
        return str(converted_dir(spec)), spec.hub_id, spec.revision
    path = Path(name).expanduser()
    if path.is_dir():
        check_model_dir(path)
        return str(path), None, None
    if path.exists():
        raise ValueError(f"--model {name} is a file: give a model folder, an embedded name {sorted(EMBEDDED)} "
                         "or a hub id.")
    if name.startswith((".", "/", "~")) or name.count("/") > 1:
        raise ValueError(f"--model {name}: no such folder. Give a model folder, an embedded name {sorted(EMBEDDED)} "
                         "or a hub id such as 'google/gemma-3-270m'.")
    if "/" not in name:
        raise ValueError(
            f"Unknown model '{name}'. Embedded models (offline): {sorted(EMBEDDED)}; random weights for tests: "
            f"{random_names()}. Otherwise pass a local model directory or a hub id such as 'google/gemma-3-270m'."
        )
    return name, name, None


def load_model(
    name: str = "gemma-3-270m",
    device: str | torch.device | None = None,
    dtype: torch.dtype | str | None = None,
    *,
    device_map: str | dict | None = None,
    revision: str | None = None,
    attn_implementation: str = "eager",
    **hf_kwargs,
) -> Model:
    """Load a causal LM by embedded name, local directory, hub id or `random:` name; returns a `Model`.

    `random:tiny-gemma3` / `random:tiny-llama` are `metalens.testing.tiny_model`'s 3-block models
    (d_model 64, character tokenizer) and `random:gemma-3-270m` / `random:llama-1b` real shapes
    (`metalens.testing.random_model`): random weights, seeded (the same model every call), no
    network; for tests, smoke runs of every verb and benches. A local directory must hold
    config.json, weights and a tokenizer; what is missing is named.
    Eager attention is the default so that attention patterns can be read and so that the
    HF, TransformerLens and nnsight views compute exactly the same thing.
    `device_map` ("auto", or a dict) is passed to accelerate to split a model across GPUs;
    it excludes `device`.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if device is not None and device_map is not None:
        raise ValueError("Pass either device= or device_map=, not both.")
    if device_map is None and device is None:
        device = default_device()
    if isinstance(dtype, str):
        if dtype not in _DTYPES:
            raise ValueError(f"Unknown dtype {dtype!r}: use one of {sorted(_DTYPES)}.")
        dtype = _DTYPES[dtype]
    if str(name).startswith(RANDOM_PREFIX):
        return _random_model(str(name), device, dtype)
    dtype = dtype or _default_dtype(device, device_map)
    source, hub_id, note = _resolve(name)
    load_kwargs = dict(dtype=dtype, attn_implementation=attn_implementation, **hf_kwargs)
    if revision is not None:
        load_kwargs["revision"] = revision
    if device_map is not None:
        load_kwargs["device_map"] = device_map
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, revision=revision)
        hf = AutoModelForCausalLM.from_pretrained(source, **load_kwargs)
    except OSError as err:
        raise ValueError(
            f"Could not load '{name}': {err}. Check the hub id and your network "
            f"(or HF_TOKEN for gated models); offline, use an embedded model: {sorted(EMBEDDED)}."
        ) from err
    if device_map is None:
        hf.to(device)
    hf.eval()
    return Model(hf, tokenizer, name=name, revision=revision or note or "main", hub_id=hub_id)
