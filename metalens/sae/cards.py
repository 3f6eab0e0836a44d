"""Feature cards: what one SAE feature fires on and what it writes, as a dict and a plotly figure.

A card holds (1) the feature's top-activating contexts in a text corpus (the token, a window of
tokens around it, the activation), (2) its logit effect, the decoder direction read through the
unembedding, and (3) a histogram of its nonzero activations with the share of tokens it fires on.
`feature_cards` builds cards for several features from one capture pass over the texts.

Logit effect: `(W_dec[i] * g) @ W_U.T`, with `g` the final RMSNorm's per-dimension scale (gemma's
`1 + weight`, llama's `weight`), since the unembedding reads the final norm's output and the
norm's scale multiplies every direction the same way. The norm's division by the residual's RMS
depends on the token, so it is left out: the values rank tokens and compare features within one
model, they are not logit changes of one token. Gemma's final-logit softcap is left out too (it
is monotone and acts on whole logits, not on one direction's share). Only for dictionaries that
write into the residual stream (resid_pre / resid_mid / resid_post, attn_out, mlp_out; a
transcoder's out_site); other sites get no logit effect and the card says why.
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import Tensor
from tqdm.auto import tqdm

from metalens.sae.dictionary import SAE

FORMAT = {"name": "feature-card", "version": 1}
RESIDUAL_SITES = ("hook_resid_pre", "hook_resid_mid", "hook_resid_post", "hook_attn_out", "hook_mlp_out")


@dataclass
class FeatureCard:
    """One feature of one SAE: top contexts, logit effect and activation histogram (JSON-ready lists)."""

    feature: int
    site: str
    model: str
    contexts: list[dict]  # largest first: {"text", "position", "token", "left", "right", "activation"}
    top_tokens: list[dict]  # [{"token", "id", "value"}], largest logit effect first
    bottom_tokens: list[dict]  # most negative first
    hist_counts: list[int]  # nonzero activations per bin
    hist_edges: list[float]  # len(hist_counts) + 1 bin edges
    n_tokens: int  # tokens scored (BOS excluded)
    n_active: int  # of them, where the feature is nonzero
    max_activation: float
    logit_note: str = ""  # how the logit effect was computed, or why there is none
    corpus: str = ""  # where the texts came from
    metadata: dict = field(default_factory=dict)

    @property
    def density(self) -> float:
        """Share of scored tokens on which the feature fires (NaN without tokens)."""
        return self.n_active / self.n_tokens if self.n_tokens else float("nan")

    def to_dict(self) -> dict:
        """The card as a JSON-ready dict (with its format name and version)."""
        return {"format": FORMAT, **asdict(self)}

    @classmethod
    def from_dict(cls, data: dict) -> "FeatureCard":
        """The card `to_dict` wrote."""
        data = dict(data)
        fmt = data.pop("format", FORMAT)
        if fmt.get("name") != FORMAT["name"] or fmt.get("version", 0) > FORMAT["version"]:
            raise ValueError(f"Not a feature card this metalens reads (format {fmt}); expected {FORMAT}.")
        return cls(**data)

    def save(self, path) -> Path:
        """Write the card as JSON to file `path` (folders created); returns it."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=2, allow_nan=False))
        return path

    @classmethod
    def load(cls, path) -> "FeatureCard":
        """Read a card `save` wrote."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"No feature card at {path}: point at a .json file FeatureCard.save wrote.")
        return cls.from_dict(json.loads(path.read_text()))

    def context_text(self, k: int) -> str:
        """Context k as one line, the activating token in [[ ]]."""
        c = self.contexts[k]
        return f"{''.join(c['left'])}[[{c['token']}]]{''.join(c['right'])}"

    def figure(self):
        """A plotly figure: activation histogram, top / bottom logit effects, and the top contexts."""
        import plotly.graph_objects as go
        from plotly.subplots import make_subplots

        fig = make_subplots(
            rows=2, cols=2, specs=[[{"type": "xy"}, {"type": "xy"}], [{"type": "table", "colspan": 2}, None]],
            subplot_titles=(f"nonzero activations ({self.n_active} of {self.n_tokens} tokens)",
                            "logit effect (top and bottom tokens)", "top-activating contexts"),
            row_heights=[0.45, 0.55], vertical_spacing=0.12)
        centres = [(a + b) / 2 for a, b in zip(self.hist_edges[:-1], self.hist_edges[1:])]
        fig.add_trace(go.Bar(x=centres, y=self.hist_counts, name="count", marker_color="#4c78a8"), row=1, col=1)
        tokens = self.top_tokens + list(reversed(self.bottom_tokens))
        if tokens:
            fig.add_trace(go.Bar(y=[repr(t["token"]) for t in tokens], x=[t["value"] for t in tokens], orientation="h",
                                 marker_color=["#54a24b" if t["value"] >= 0 else "#e45756" for t in tokens],
                                 name="logit effect"), row=1, col=2)
            fig.update_yaxes(autorange="reversed", row=1, col=2)
        fig.add_trace(go.Table(header={"values": ["activation", "context ([[token]])"]},
                               cells={"values": [[round(c["activation"], 4) for c in self.contexts],
                                                 [self.context_text(k) for k in range(len(self.contexts))]]},
                               columnwidth=[1, 8]), row=2, col=1)
        fig.update_layout(title=f"Feature {self.feature} at {self.site} ({self.model}), density {self.density:.4f}",
                          showlegend=False, height=700)
        return fig


def logit_direction_site(sae: SAE) -> str | None:
    """The residual-stream site the dictionary writes into (None when its output is elsewhere)."""
    target = sae.out_site if sae.is_transcoder else sae.site
    return target if target is not None and target.endswith(RESIDUAL_SITES) else None


def final_norm_scale(model) -> Tensor:
    """[d_model] the final norm's per-dimension scale g, with norm(x) = x / rms(x) * g (float32).

    Read off the module itself (its output on a constant vector, whose RMS is 1), so gemma's
    `1 + weight` and llama's `weight` come out alike; a norm that is not an RMSNorm (it does not
    give x / rms(x) * g on a random vector) is refused.
    """
    from metalens.sites import FINAL_NORM, resolve_site

    norm = resolve_site(model, FINAL_NORM).module
    p = next(norm.parameters(), None)
    device, dtype = (p.device, p.dtype) if p is not None else (model.device, model.dtype)
    eps = float(getattr(norm, "variance_epsilon", getattr(norm, "eps", 0.0)) or 0.0)
    with torch.no_grad():
        g = norm(torch.ones(1, model.d_model, device=device, dtype=dtype)).float()[0] * math.sqrt(1 + eps)
        probe = torch.randn(1, model.d_model, generator=torch.Generator().manual_seed(0)).to(device, dtype)
        want = probe.float() * torch.rsqrt(probe.float().pow(2).mean(-1, keepdim=True) + eps) * g
        got = norm(probe).float()
    if not torch.allclose(got, want, rtol=1e-2, atol=1e-3 * float(want.abs().max())):
        raise ValueError(f"The final norm of {model.name} ({type(norm).__name__}) is not an RMSNorm: the logit "
                         "effect through its scale is not defined here.")
    return g.cpu()


def logit_effect(model, sae: SAE, features) -> Tensor:
    """[n_features, vocab] float32 logit effect of one unit of each feature (see the module docstring).

    Refused (ValueError) for a dictionary that does not write into the residual stream.
    """
    if logit_direction_site(sae) is None:
        raise ValueError(f"This dictionary writes to {sae.out_site or sae.site}, not the residual stream "
                         f"({', '.join(RESIDUAL_SITES)}): its decoder rows are not directions the unembedding reads.")
    if sae.d_out != model.d_model:
        raise ValueError(f"The SAE's decoder width {sae.d_out} differs from {model.name}'s d_model {model.d_model}: "
                         "it was trained on another model.")
    idx = torch.as_tensor(list(features), dtype=torch.long)
    rows = sae.W_dec[idx].float().cpu()  # [n, d_model]
    if sae.rescale_acts_by_decoder_norm:  # decode divides by the row norm: one unit writes the unit row
        rows = rows / rows.norm(dim=-1, keepdim=True)
    W_U = model.hf.get_output_embeddings().weight.detach().float().cpu()  # [vocab, d_model]
    return (rows * final_norm_scale(model)) @ W_U.T  # [n, vocab]


def _token_text(tokenizer, token_id: int) -> str:
    return tokenizer.decode([token_id])


def _check_features(sae: SAE, features) -> list[int]:
    if isinstance(features, int):
        features = [features]
    features = list(features)
    if not features:
        raise ValueError("No features given: name at least one feature index.")
    bad = [f for f in features if isinstance(f, bool) or not isinstance(f, int) or not 0 <= f < sae.d_sae]
    if bad:
        raise ValueError(f"Feature index {bad[0]!r} is out of range: this SAE has features 0-{sae.d_sae - 1}.")
    return list(dict.fromkeys(features))


def feature_cards(model, sae: SAE, features, texts, *, corpus: str = "", n_contexts: int = 10, window: int = 8,
                  n_logits: int = 10, bins: int = 30, batch_size: int = 8, max_length: int | None = 64,
                  chunk_texts: int = 64, progress: bool = True) -> list[FeatureCard]:
    """Cards for `features` (indices into the SAE) from one capture pass over `texts`.

    texts: the corpus (e.g. `metalens.sae.read_corpus(path)[0]`), read with `capture(..., sae=sae)`
    at every token in chunks of `chunk_texts`, keeping only these features' activations; each
    text's first token is left out when it is BOS (an attention sink dictionaries are not trained
    on). window: tokens shown on each side of a context's token. A transcoder's features are read
    from its input site and its logit effect from its decoder at `out_site`.
    """
    from metalens.capture import capture, feature_keys

    features = _check_features(sae, features)
    texts = [texts] if isinstance(texts, str) else list(texts)
    if not texts:
        raise ValueError("No texts to build feature cards from: pass a non-empty corpus.")
    for name, value in (("n_contexts", n_contexts), ("n_logits", n_logits), ("bins", bins), ("window", window)):
        if isinstance(value, bool) or not isinstance(value, int) or value < (0 if name == "window" else 1):
            raise ValueError(f"{name} must be a positive integer, not {value!r}.")
    cols = torch.tensor(features)
    tok = model.tokenizer
    bos = tok.bos_token_id
    key = feature_keys(sae)[0]
    values, where = [], []  # per chunk: [n_tok, k] activations, [n_tok, 2] (text, position)
    ids_by_text: list[list[int]] = []
    for start in tqdm(range(0, len(texts), chunk_texts), desc="feature cards", unit="chunk", disable=not progress):
        chunk = texts[start:start + chunk_texts]
        acts = capture(model, chunk, [], positions="all", batch_size=batch_size, max_length=max_length,
                       progress=False, sae=sae)
        ids = tok(chunk, truncation=max_length is not None, max_length=max_length)["input_ids"]
        counts = acts.token_counts.tolist()
        if counts != [len(row) for row in ids]:
            raise RuntimeError("The capture's token counts differ from the tokenizer's: report this as a metalens bug.")
        f = acts[key][:, cols].float()  # [n_tok, k]
        pos = torch.cat([torch.arange(n) for n in counts])
        text = torch.cat([torch.full((n,), start + i) for i, n in enumerate(counts)])
        keep = torch.tensor([not (p == 0 and bos is not None and row[0] == bos)
                             for row, n in zip(ids, counts) for p in range(n)])
        values.append(f[keep])
        where.append(torch.stack([text, pos], -1)[keep])
        ids_by_text.extend(ids)
    values, where = torch.cat(values), torch.cat(where)  # [n_tok, k], [n_tok, 2]
    try:
        effect = logit_effect(model, sae, features)  # [k, vocab]
        note = ("(W_dec[i] * g) @ W_U.T with g the final RMSNorm's scale; the per-token 1/rms factor and the "
                "final-logit softcap left out, so values rank tokens rather than give logit changes")
    except ValueError as err:
        effect, note = None, f"no logit effect: {err}"
    cards = []
    for j, feature in enumerate(features):
        act = values[:, j]
        active = act[act != 0]
        top = act.topk(min(n_contexts, int((act > 0).sum()))) if len(act) else None
        contexts = []
        for value, row in zip(top.values.tolist(), top.indices.tolist()) if top is not None else []:
            t, p = where[row].tolist()
            ids = ids_by_text[t]
            first = 1 if bos is not None and ids[0] == bos else 0  # BOS is not shown as context
            contexts.append({"text": t, "position": p, "token": _token_text(tok, ids[p]),
                             "left": [_token_text(tok, i) for i in ids[max(first, p - window):p]],
                             "right": [_token_text(tok, i) for i in ids[p + 1:p + 1 + window]],
                             "activation": value})
        if len(active):
            lo, hi = float(active.min()), float(active.max())
            hi = hi if hi > lo else lo + 1e-6
            counts = torch.histc(active, bins=bins, min=lo, max=hi).long().tolist()
            edges = torch.linspace(lo, hi, bins + 1).tolist()
        else:
            counts, edges = [], []
        top_tokens = bottom_tokens = []
        if effect is not None:
            n = min(n_logits, effect.shape[1])
            up, down = effect[j].topk(n), (-effect[j]).topk(n)
            top_tokens = [{"token": _token_text(tok, i), "id": i, "value": v} for v, i in zip(up.values.tolist(), up.indices.tolist())]
            bottom_tokens = [{"token": _token_text(tok, i), "id": i, "value": -v}
                             for v, i in zip(down.values.tolist(), down.indices.tolist())]
        cards.append(FeatureCard(
            feature=feature, site=sae.site, model=model.name, contexts=contexts, top_tokens=top_tokens,
            bottom_tokens=bottom_tokens, hist_counts=counts, hist_edges=edges, n_tokens=len(act),
            n_active=len(active), max_activation=float(act.max()) if len(act) else 0.0, logit_note=note,
            corpus=corpus, metadata={"n_texts": len(texts), "max_length": max_length, "window": window,
                                     "architecture": sae.architecture, "d_sae": sae.d_sae}))
    return cards


def save_cards(cards: list[FeatureCard], path) -> Path:
    """Write several cards into one JSON file (`{"cards": [...]}`); returns it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"format": FORMAT, "cards": [c.to_dict() for c in cards]}, indent=2, allow_nan=False))
    return path


def load_cards(path) -> list[FeatureCard]:
    """The cards `save_cards` wrote."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"No feature cards at {path}: point at a .json file save_cards wrote.")
    return [FeatureCard.from_dict(c) for c in json.loads(path.read_text())["cards"]]
