"""A post-training run's resumable state as safetensors + JSON: reading it back can never run code.

`trainer-state.safetensors` holds the tensors (trainable weights, the optimizer's moments and step
counts); `trainer-state.json` the rest (step, optimizer hyper-parameters, scheduler, the problem
sampler's RNG, the curve so far). The pickle file older runs wrote (`trainer-state.pt`) is refused
unread: unpickling a checkpoint from someone else's run would run whatever code it carries.
"""
from __future__ import annotations

import json
from pathlib import Path

from torch import Tensor

TENSOR_FILE = "trainer-state.safetensors"
JSON_FILE = "trainer-state.json"  # written last: its presence marks a complete state
PICKLE_FILE = "trainer-state.pt"  # older metalens; never loaded
FORMAT_VERSION = 1


def has_state(checkpoint: Path) -> bool:
    """True when `checkpoint` holds a complete (safetensors + JSON) trainer state."""
    return (checkpoint / JSON_FILE).is_file() and (checkpoint / TENSOR_FILE).is_file()


def save_trainer_state(checkpoint: Path, state: dict) -> None:
    """Write `state` ({"params": {name: tensor}, "optimizer": state_dict, "rng": Random.getstate(), ...})."""
    tensors = {f"params/{name}": t.detach().contiguous().clone() for name, t in state["params"].items()}
    opt_state: dict[str, dict] = {}
    for index, slots in state["optimizer"]["state"].items():
        plain = {}
        for key, value in slots.items():
            if isinstance(value, Tensor):
                tensors[f"optimizer/{index}/{key}"] = value.detach().contiguous().clone()
            else:
                plain[key] = value
        opt_state[str(index)] = plain
    rest = {k: v for k, v in state.items() if k not in ("params", "optimizer", "rng")}
    version, internal, gauss = state["rng"]
    meta = {"format": {"name": "posttrain-trainer-state", "version": FORMAT_VERSION}, **rest,
            "param_names": list(state["params"]), "rng": [version, list(internal), gauss],
            "optimizer": {"param_groups": state["optimizer"]["param_groups"], "state": opt_state}}
    from safetensors.torch import save_file

    for path in (checkpoint / JSON_FILE, checkpoint / TENSOR_FILE):  # an old JSON must not vouch for new tensors
        path.unlink(missing_ok=True)
    tmp = checkpoint / (TENSOR_FILE + ".tmp")
    save_file(tensors, str(tmp))
    tmp.replace(checkpoint / TENSOR_FILE)
    tmp = checkpoint / (JSON_FILE + ".tmp")
    # NaN allowed: the step-0 row of the curve has no loss yet, and a resumed curve must equal the original
    tmp.write_text(json.dumps(meta))
    tmp.replace(checkpoint / JSON_FILE)


def drop_trainer_state(checkpoint: Path) -> None:
    """Remove a checkpoint's trainer state (only the latest checkpoint keeps one)."""
    for name in (JSON_FILE, TENSOR_FILE):
        (checkpoint / name).unlink(missing_ok=True)


def load_trainer_state(checkpoint: Path) -> dict:
    """The state `save_trainer_state` wrote into `checkpoint`, checked; errors name the file."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from metalens.artifact import read_json

    meta = read_json(checkpoint / JSON_FILE, "post-training trainer state")
    version = meta.pop("format", {}).get("version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise ValueError(f"{checkpoint / JSON_FILE} has format version {version!r}; this metalens reads up to "
                         f"{FORMAT_VERSION}: upgrade metalens, or choose a new --out.")
    try:
        tensors = load_file(str(checkpoint / TENSOR_FILE))
        params = {name: tensors.pop(f"params/{name}") for name in meta.pop("param_names")}
        opt = meta["optimizer"]
        slots = {int(i): dict(plain) for i, plain in opt["state"].items()}
        for key, value in tensors.items():
            _, index, slot = key.split("/", 2)
            slots.setdefault(int(index), {})[slot] = value
        version, internal, gauss = meta["rng"]
    except (SafetensorError, OSError) as err:
        raise ValueError(f"{checkpoint / TENSOR_FILE} is unreadable ({err}): choose a new --out, or delete "
                         f"{checkpoint} to resume from the checkpoint before it.") from None
    except (KeyError, ValueError, TypeError) as err:
        raise ValueError(f"{checkpoint} holds a trainer state that does not fit together ({type(err).__name__}: "
                         f"{err}): choose a new --out.") from None
    return {**meta, "params": params, "optimizer": {"state": slots, "param_groups": opt["param_groups"]},
            "rng": (version, tuple(internal), gauss)}


def save_latest_state(checkpoint: Path, previous: Path | None, state: dict) -> None:
    """Write the trainer state into `checkpoint` and drop `previous`'s (only the latest checkpoint keeps one)."""
    save_trainer_state(checkpoint, state)
    if previous is not None and previous != checkpoint:
        drop_trainer_state(previous)


def read_resume_meta(checkpoint: Path) -> dict:
    """A checkpoint's metadata (metalens-checkpoint.json), checked for the fields resuming reads."""
    from metalens.artifact import read_json
    from metalens.checkpoints import META_FILE

    meta = read_json(checkpoint / META_FILE, "checkpoint metadata")
    if not isinstance(meta.get("step"), int) or not isinstance(meta.get("config"), dict):
        raise ValueError(f"{checkpoint / META_FILE} lacks an integer 'step' or a 'config': it is not a checkpoint "
                         "`metalens posttrain` wrote; choose a new --out.")
    return meta
