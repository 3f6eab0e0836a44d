"""Logit lens: each block's residual stream read out through the final norm and the unembedding.

nostalgebraist 2020, "interpreting GPT: the logit lens". Layer l's lens is the distribution the
model would predict if it stopped after block l: final norm, unembedding and the final-logit
softcap (`Model.final_logits`) applied to `blocks.l.hook_resid_post`. The last layer's lens is
the model's own next-token distribution.

`run_lens` is the workflow (`metalens lens`): a `LensConfig` in, a `LensResult` out, saved with `out`.
The decoding is written once; a backend only decides how the residuals are captured: "hf"
(`metalens.run_with_cache`), "transformer_lens" (`model.bridge`) or "nnsight" (`model.nnsight`).
They read the same weights, so the three must agree; the tests hold them to it.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import Tensor

import metalens
from metalens.artifact import read_json
from metalens.report import save_json, write_report
from metalens.sites import resid_post

BACKENDS = ("hf", "transformer_lens", "nnsight")


@dataclass
class LensConfig:
    """Settings of `run_lens`: the prompt, an optional target text and the backend that captures."""

    prompt: str
    target: str | None = None  # also track this text's first token, e.g. " Paris"
    backend: str = "hf"  # hf, transformer_lens or nnsight: how the residuals are captured
    layers: tuple[int, ...] | None = None  # blocks read out (None: every block)

    def __post_init__(self):
        if not isinstance(self.prompt, str) or not self.prompt:
            raise ValueError("The logit lens needs a non-empty prompt.")
        if self.backend not in BACKENDS:
            raise ValueError(f"Unknown backend '{self.backend}': use one of {BACKENDS}.")
        if self.target is not None and not self.target:
            raise ValueError("An empty target has no token to track: pass text such as ' Paris', or no target.")


@dataclass
class LensResult:
    """Top token and its probability (and the target's) per layer x position of one prompt.

    Lists are [n_layers][n_positions]; row i is the residual stream after block `layers[i]`
    (`layers` None, as in results saved before it existed: every block in order).
    """

    prompt: str
    tokens: list[str]
    top_token: list[list[str]]
    top_prob: list[list[float]]
    target: str | None = None
    target_token: str | None = None  # the target's first token, whose probability is tracked
    target_prob: list[list[float]] | None = None
    backend: str = "hf"
    metadata: dict = field(default_factory=dict)
    layers: list[int] | None = None

    @property
    def blocks(self) -> list[int]:
        """The block each row reads (every block when `layers` is None)."""
        return list(range(len(self.top_prob))) if self.layers is None else list(self.layers)

    def save(self, path) -> Path:
        """Write results.json and report.html into the folder `path`; returns it."""
        path = Path(path)
        save_json(path / "results.json", asdict(self))
        write_report(path / "report.html", f"Logit lens: {self.metadata.get('model', '')}", self._sections(),
                     metadata=self.metadata)
        return path

    @classmethod
    def load(cls, path) -> LensResult:
        """The result saved in the folder `path`."""
        return cls(**read_json(Path(path) / "results.json", "logit-lens results"))

    def _sections(self) -> list:
        sections = [("Prompt", f"{self.prompt!r} ({len(self.tokens)} tokens, read through the {self.backend} backend)"),
                    ("Top token per layer and position", lens_heatmap(self))]
        if self.target_prob is not None:
            sections.append((f"Probability of {self.target_token!r} at the last position", target_plot(self)))
        return sections


def lens_heatmap(result: LensResult):
    """Layer x position heatmap: colour = top-token probability, text = the top token."""
    import plotly.graph_objects as go

    n_layers, n_pos = len(result.top_prob), len(result.tokens)
    fig = go.Figure(go.Heatmap(
        z=result.top_prob, x=list(range(n_pos)), y=list(range(n_layers)), text=result.top_token,
        texttemplate="%{text}", colorscale="Blues", zmin=0, zmax=1, colorbar={"title": "p(top)"},
        hovertemplate="layer %{y}, position %{x}<br>top '%{text}': %{z:.3f}<extra></extra>",
    ))
    # numeric axes with token labels: repeated tokens would merge on a categorical axis
    fig.update_xaxes(tickvals=list(range(n_pos)), ticktext=result.tokens, title="input token (position)")
    fig.update_yaxes(tickvals=list(range(n_layers)), ticktext=[f"L{l}" for l in result.blocks],
                     title="after block")
    fig.update_layout(height=200 + 28 * n_layers, width=max(600, 70 * n_pos))
    return fig


def target_plot(result: LensResult):
    """Target-token probability at the last position, per layer."""
    import plotly.graph_objects as go

    probs = [row[-1] for row in result.target_prob]
    fig = go.Figure(go.Scatter(x=result.blocks, y=probs, mode="lines+markers"))
    fig.update_layout(xaxis_title="after block", yaxis_title=f"p({result.target_token!r})", yaxis_range=[0, 1],
                      height=350)
    return fig


def _capture_hf(model, ids: Tensor) -> list[Tensor]:
    sites = [resid_post(l) for l in range(model.n_layers)]
    cache = metalens.run_with_cache(model, ids, sites=sites)  # stops after the last block: no unembedding
    return [cache[s][0] for s in sites]


def _capture_transformer_lens(model, ids: Tensor) -> list[Tensor]:
    sites = [resid_post(l) for l in range(model.n_layers)]
    _, cache = model.bridge.run_with_cache(ids, names_filter=lambda name: name in sites)
    return [cache[s][0] for s in sites]


def _capture_nnsight(model, ids: Tensor) -> list[Tensor]:
    lm, saved = model.nnsight, []
    with lm.trace({"input_ids": ids, "attention_mask": torch.ones_like(ids)}):
        for layer in lm.model.layers:
            saved.append(layer.output.save())
    return [(s[0] if isinstance(s, tuple) else s)[0] for s in saved]  # older transformers return a tuple


_CAPTURE = {"hf": _capture_hf, "transformer_lens": _capture_transformer_lens, "nnsight": _capture_nnsight}


def lens_probs(model, resid: Tensor) -> Tensor:
    """Next-token probabilities [..., vocab] read from residual streams [..., d_model]."""
    norm = model.hf.model.norm
    hidden = norm(resid.to(norm.weight.device, norm.weight.dtype))
    return model.final_logits(hidden).float().softmax(-1)


@torch.no_grad()
def logit_lens(model, prompt: str, *, target: str | None = None, backend: str = "hf", layers=None) -> LensResult:
    """Logit lens of `prompt` after each block of `layers` (default: every block); with `target`,
    its first token's probability too."""
    if backend not in _CAPTURE:
        raise ValueError(f"Unknown backend '{backend}': use one of {BACKENDS}.")
    blocks = list(range(model.n_layers)) if layers is None else model.resolve_layers(layers)
    target_id = None
    if target is not None:
        target_ids = model.tokenizer(target, add_special_tokens=False)["input_ids"]
        if not target_ids:
            raise ValueError(f"Target {target!r} has no tokens: pass a non-empty string such as ' Paris'.")
        target_id = target_ids[0]
    ids = model.tokenize([prompt])["input_ids"]  # [1, pos]
    resid = torch.stack(_CAPTURE[backend](model, ids))[blocks]  # [layer, pos, d_model]
    probs = lens_probs(model, resid)  # [layer, pos, vocab]
    top_prob, top_id = probs.max(-1)
    decode = model.tokenizer.decode
    result = LensResult(
        prompt=prompt, tokens=[decode([i]) for i in ids[0].tolist()],
        top_token=[[decode([i]) for i in row] for row in top_id.tolist()], top_prob=top_prob.tolist(),
        backend=backend, metadata=model.metadata(), layers=None if layers is None else blocks,
    )
    if target_id is not None:
        result.target, result.target_token = target, decode([target_id])
        result.target_prob = probs[..., target_id].tolist()
    return result


def run_lens(model, config: LensConfig, *, out=None, progress: bool = True) -> LensResult:
    """The logit lens of `config.prompt` (`logit_lens`); with `out`, results.json and report.html saved there."""
    if not isinstance(config, LensConfig):
        raise TypeError(f"config must be a LensConfig, not {type(config).__name__}: call "
                        "run_lens(model, LensConfig(prompt='The capital of France is'), out=DIR).")
    result = logit_lens(model, config.prompt, target=config.target, backend=config.backend, layers=config.layers)
    if out is not None:
        result.save(out)
    return result
