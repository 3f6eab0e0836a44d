"""Mode `lora`: LoRA adapters plus the reserved rows, kept honest by a KL penalty to the frozen model.

The KL is taken over the normal vocabulary only (the K reserved tokens excluded), from the
frozen model (adapters disabled) to the adapted one, at every response position.
"""
from __future__ import annotations

import copy
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import Tensor

from metalens.introspect.heads.bins import BinSpec, prefix_labels
from metalens.introspect.heads.drift import Drift
from metalens.introspect.heads.features import final_states, flatten
from metalens.introspect.heads.head import ReservedHead


def _batch(model, rows, spec):
    """Right-padded ids and mask, the (row, position) of every response position, and their bins."""
    ids, mask = model.pad([r["prompt_ids"] + r["completion"][:-1] for r in rows], side="right")
    select = [(j, len(r["prompt_ids"]) - 1 + t) for j, r in enumerate(rows) for t in range(len(r["completion"]))]
    bins = torch.cat([prefix_labels(len(r["completion"]), r["reward"], spec)["bin"] for r in rows])
    return ids, mask, tuple(torch.tensor(x, device=model.device) for x in zip(*select)), bins.to(model.device)


def _normal_logprobs(model, hidden: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """Log-probabilities over the normal vocabulary (reserved tokens dropped) from final-norm states."""
    return model.unembed(hidden, keep.nonzero()[:, 0]).log_softmax(-1)  # [n, vocab - K]


def train_lora(model, records: list[dict], spec: BinSpec | None = None, steps: int = 20, batch_size: int = 2,
               rank: int = 8, lr: float = 1e-3, kl_coef: float = 1.0, seed: int = 0,
               target_modules=("q_proj", "v_proj"), init: ReservedHead | None = None, progress: bool = False):
    """Train LoRA adapters and the reserved rows jointly; returns (head, peft_model, history).

    `init`: start the reserved rows from a head (e.g. mode `head`'s fit) instead of the model's own.

    The adapters stay un-merged so `measure_kl` can compare against the frozen model;
    `peft_model.merge_and_unload()` bakes them into `model.hf` afterwards (in place).
    """
    from peft import LoraConfig, get_peft_model

    head = ReservedHead.from_model(model, spec, None if init is None else init.start)
    if init is not None:
        head.weight = init.weight.detach().clone().float()
    torch.manual_seed(seed)
    peft_model = get_peft_model(model.hf, LoraConfig(r=rank, lora_alpha=2 * rank, lora_dropout=0.0,
                                                     target_modules=list(target_modules)))
    try:  # adapters are in `model.hf` from here: an exception must not leave them there
        reserved, history = _fit(model, peft_model, head, records, steps, batch_size, lr, kl_coef, seed, progress)
    except BaseException:
        peft_model.unload()
        raise
    peft_model.eval()
    head.weight = reserved.detach().cpu().clone()
    head.metadata = {**head.metadata, "mode": "lora", "steps": steps, "rank": rank, "kl_coef": kl_coef,
                     "lr": lr, "seed": seed, "target_modules": list(target_modules),
                     "init": "given head" if init is not None else "model rows"}
    return head, peft_model, history


def _fit(model, peft_model, head: ReservedHead, records, steps, batch_size, lr, kl_coef, seed, progress):
    """The training loop of `train_lora`: (reserved rows, history)."""
    spec = head.spec
    reserved = head.weight.clone().to(model.device).requires_grad_(True)
    keep = torch.ones(model.d_vocab, dtype=torch.bool, device=model.device)
    keep[list(head.token_ids)] = False
    params = [p for p in peft_model.parameters() if p.requires_grad]
    opt = torch.optim.Adam([{"params": params, "lr": lr}, {"params": [reserved], "lr": lr}])
    rows = flatten(records)
    gen = torch.Generator().manual_seed(seed)
    history = []
    peft_model.train()
    iterator = range(steps)
    if progress:
        from tqdm import tqdm

        iterator = tqdm(iterator, desc="lora steps")
    for step in iterator:
        pick = torch.randperm(len(rows), generator=gen)[:batch_size].tolist()
        ids, mask, where, bins = _batch(model, [rows[i] for i in pick], spec)
        with torch.no_grad(), peft_model.disable_adapter():
            ref = _normal_logprobs(model, final_states(model, ids, mask)[where], keep)
        hidden = final_states(model, ids, mask)[where]  # [n_resp, d_model]
        ce = F.cross_entropy(model.softcap(hidden.float() @ reserved.T), bins)  # the reserved logits, capped
        kl = F.kl_div(_normal_logprobs(model, hidden, keep), ref, log_target=True, reduction="batchmean")
        loss = ce + kl_coef * kl
        opt.zero_grad()
        loss.backward()
        opt.step()
        history.append({"step": step, "ce": ce.item(), "kl": kl.item()})
    return reserved, history


@torch.no_grad()
def measure_drift(model, peft_model, records: list[dict], head: ReservedHead, batch_size: int = 2) -> dict:
    """`drift.Drift` summary (KL(frozen || adapted), NLL of the sampled tokens under each, top-1
    agreement) over the normal vocabulary at the response positions of `records`."""
    keep = torch.ones(model.d_vocab, dtype=torch.bool, device=model.device)
    keep[list(head.token_ids)] = False
    rows, drift = flatten(records), Drift()
    for i in range(0, len(rows), batch_size):
        chunk = rows[i : i + batch_size]
        ids, mask, where, _ = _batch(model, chunk, head.spec)
        new = _normal_logprobs(model, final_states(model, ids, mask)[where], keep)
        with peft_model.disable_adapter():
            ref = _normal_logprobs(model, final_states(model, ids, mask)[where], keep)
        targets = torch.tensor([t for r in chunk for t in r["completion"]], device=ref.device)
        columns = keep.cumsum(0)[targets] - 1  # token ids -> columns of the vocabulary without the reserved
        drift.add(ref, new, columns.where(keep[targets], -1))
    return drift.summary()


def measure_kl(model, peft_model, records: list[dict], head: ReservedHead, batch_size: int = 2) -> float:
    """Mean KL(frozen || adapted) over the normal vocabulary at the response positions of `records`."""
    return measure_drift(model, peft_model, records, head, batch_size)["kl"]


@dataclass
class LoraAdapter:
    """Trained LoRA weights and their peft config, held in memory until `save` writes them."""

    config: object  # peft LoraConfig
    weights: dict[str, Tensor]

    @classmethod
    def from_peft(cls, peft_model) -> "LoraAdapter":
        """The active adapter of a peft model, copied to the CPU."""
        from peft import get_peft_model_state_dict

        weights = {k: v.detach().cpu().clone() for k, v in get_peft_model_state_dict(peft_model).items()}
        return cls(copy.deepcopy(peft_model.peft_config["default"]), weights)

    def save(self, path: str | Path) -> Path:
        """Write `adapter_config.json` + `adapter_model.safetensors` (peft's layout) into directory `path`."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        config = copy.deepcopy(self.config)
        config.inference_mode = True
        config.save_pretrained(str(path))
        save_file({k: v.contiguous() for k, v in self.weights.items()}, str(path / "adapter_model.safetensors"),
                  metadata={"format": "pt"})
        return path

    @classmethod
    def load(cls, path: str | Path) -> "LoraAdapter":
        """The adapter `save` (or peft's `save_pretrained`) wrote into `path`."""
        from peft import LoraConfig

        return cls(LoraConfig.from_pretrained(str(path)), load_file(str(Path(path) / "adapter_model.safetensors")))


@contextmanager
def adapter_applied(model, adapter):
    """Inject LoRA adapters (a `LoraAdapter`, or the folder `save` wrote) into `model.hf` for the block;
    they are removed on exit."""
    import tempfile

    from peft import PeftModel

    with tempfile.TemporaryDirectory() as scratch:
        if isinstance(adapter, LoraAdapter):  # peft loads adapters from a folder only
            adapter = adapter.save(Path(scratch) / "adapter")
        peft_model = PeftModel.from_pretrained(model.hf, str(adapter))
        peft_model.eval()
        try:
            yield peft_model
        finally:
            peft_model.unload()
