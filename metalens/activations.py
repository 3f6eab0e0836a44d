"""`Activations`: captured tensors per site, with the layout and metadata to use them."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor

POSITIONS = ("last", "mean", "all")


@dataclass
class Activations:
    """Activations per site.

    `acts[site]` is `[n_texts, *site_shape]` for positions "last"/"mean", and
    `[n_tokens, *site_shape]` (every text's non-padding tokens, concatenated in order) for
    "all"; `token_counts[i]` is text i's number of tokens, so `split()` recovers each text.
    """

    acts: dict[str, Tensor]
    token_counts: Tensor  # [n_texts]
    positions: str
    metadata: dict = field(default_factory=dict)

    def __getitem__(self, site: str) -> Tensor:
        if site not in self.acts:
            raise KeyError(f"Site '{site}' was not captured; captured sites: {sorted(self.acts)}")
        return self.acts[site]

    @property
    def sites(self) -> list[str]:
        return list(self.acts)

    def __len__(self) -> int:
        return len(self.token_counts)

    def split(self, site: str) -> list[Tensor]:
        """Per-text tensors `[n_tokens_i, *site_shape]` from an "all" capture."""
        if self.positions != "all":
            raise ValueError(f"split() needs positions='all'; these were captured with '{self.positions}'.")
        return list(torch.split(self[site], self.token_counts.tolist()))

    def save(self, path: str | Path) -> None:
        """Write `acts.safetensors` and `meta.json` into directory `path`."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        tensors = {f"site/{k}": v.contiguous() for k, v in self.acts.items()}
        tensors["token_counts"] = self.token_counts
        save_file(tensors, path / "acts.safetensors")
        meta = {"positions": self.positions, **self.metadata}
        (path / "meta.json").write_text(json.dumps(meta, indent=2))

    @classmethod
    def load(cls, path: str | Path) -> "Activations":
        """Read what `save` wrote."""
        path = Path(path)
        tensors = load_file(path / "acts.safetensors")
        meta = json.loads((path / "meta.json").read_text())
        acts = {k.removeprefix("site/"): v for k, v in tensors.items() if k.startswith("site/")}
        return cls(acts, tensors["token_counts"], meta.pop("positions"), meta)


def concat(parts: list[Activations]) -> Activations:
    """Join captures of consecutive text ranges into one."""
    if not parts:
        raise ValueError("Nothing to concatenate: no activation parts were given.")
    first = parts[0]
    acts = {s: torch.cat([p.acts[s] for p in parts]) for s in first.acts}
    counts = torch.cat([p.token_counts for p in parts])
    return Activations(acts, counts, first.positions, dict(first.metadata))
