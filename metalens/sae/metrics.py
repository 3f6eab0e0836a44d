"""How good a dictionary is on a model: variance explained, L0, dead features, CE loss recovered.

CE loss recovered follows SAEBench / SAELens: splice the reconstruction into the forward pass
and place its next-token loss between the clean pass (1) and an ablation (0), here both the
zero ablation and the mean ablation (the site's mean activation over the same tokens).
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import Tensor
from tqdm.auto import tqdm

from metalens.forward import run_with_cache
from metalens.hooks import HookFn
from metalens.sae.dictionary import SAE


def splice_edits(sae: SAE, *, skip_first: bool = False) -> dict[str, HookFn]:
    """`run_with_cache` edits that replace the dictionary's target with its reconstruction.

    An SAE reconstructs its own site; a transcoder reads `site` and replaces `out_site` with
    what it predicts there. skip_first: leave position 0 (the BOS attention sink, whose norm is
    far outside what dictionaries are trained on) untouched.
    """
    if sae.site is None:
        raise ValueError("This dictionary names no site: set sae.site to the TransformerLens hook it was trained on.")

    def keep_first(act: Tensor, new: Tensor) -> Tensor:
        if skip_first:
            new = torch.cat([act[:, :1], new[:, 1:]], dim=1)
        return new

    if not sae.is_transcoder:
        return {sae.site: lambda act: keep_first(act, sae.splice(act))}
    seen: dict[str, Tensor] = {}

    def read(act: Tensor) -> None:
        seen["in"] = act.reshape(*act.shape[:2], -1)

    def write(act: Tensor) -> Tensor:
        x = seen.pop("in")
        new = sae.forward(x.to(sae.W_enc.dtype)).to(act.dtype).reshape(act.shape)
        return keep_first(act, new)

    return {sae.site: read, sae.out_site: write}


@dataclass
class SAEEval:
    """One dictionary's scores on a set of texts (statistics over non-padding tokens, BOS excluded)."""

    site: str
    n_tokens: int
    variance_explained: float  # 1 - sum |x - x_hat|^2 / sum |x - mean x|^2
    mse: float  # mean over tokens of |x - x_hat|^2
    l0: float  # mean number of active features per token
    dead_share: float  # share of features never active on these tokens
    ce_clean: float
    ce_spliced: float
    ce_zero_ablation: float
    ce_mean_ablation: float
    ce_recovered_zero: float  # (CE_zero - CE_spliced) / (CE_zero - CE_clean)
    ce_recovered_mean: float  # (CE_mean - CE_spliced) / (CE_mean - CE_clean)

    def to_dict(self) -> dict:
        """The scores as a JSON-ready dict."""
        return asdict(self)

    def save(self, path) -> Path:
        """Write `path/sae_eval.json`; returns `path`."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        (path / "sae_eval.json").write_text(json.dumps(self.to_dict(), indent=2))
        return path

    @classmethod
    def load(cls, path) -> "SAEEval":
        """Read what `save` wrote."""
        from metalens.artifact import read_json

        return cls(**read_json(Path(path) / "sae_eval.json", "SAE evaluation"))


def _next_token_ce(logits: Tensor, ids: Tensor, mask: Tensor) -> tuple[float, int]:
    """(summed CE, count) of predicting token t+1 at every t where both are real tokens."""
    logp = logits[:, :-1].float().log_softmax(-1)  # [batch, pos-1, vocab]
    target = ids[:, 1:]
    valid = (mask[:, 1:] * mask[:, :-1]).bool()
    nll = -logp.gather(-1, target.unsqueeze(-1)).squeeze(-1)  # [batch, pos-1]
    return nll[valid].sum().item(), int(valid.sum())


def _batches(texts: list[str], batch_size: int):
    for start in range(0, len(texts), batch_size):
        yield texts[start:start + batch_size]


@torch.no_grad()
def evaluate_sae(model, sae: SAE, texts, *, batch_size: int = 8, max_length: int | None = 128,
                 progress: bool = False) -> SAEEval:
    """Score `sae` on `texts` (see `SAEEval`); two passes: clean (for the mean), then spliced / ablated.

    Position 0 (BOS) is left unspliced and unablated, and excluded from the statistics.
    """
    texts = [texts] if isinstance(texts, str) else list(texts)
    if not texts:
        raise ValueError("No texts to evaluate on: pass a non-empty list of strings.")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, not {batch_size}.")
    target = sae.out_site if sae.is_transcoder else sae.site
    if target is None:
        raise ValueError("This dictionary names no site: set sae.site to the TransformerLens hook it was trained on.")
    sites = [sae.site, target] if sae.is_transcoder else [sae.site]
    batches = list(_batches(texts, batch_size))
    bar = tqdm(total=2 * len(batches), desc=f"evaluate SAE {target}", disable=not progress)
    # Pass 1: clean loss, the target's mean, and the reconstruction statistics.
    ce = {"clean": [0.0, 0], "spliced": [0.0, 0], "zero": [0.0, 0], "mean": [0.0, 0]}
    sum_x, sum_sq_x, sum_err, n_tok = None, 0.0, 0.0, 0
    l0_sum, ever_active = 0.0, torch.zeros(sae.d_sae, dtype=torch.bool)
    for chunk in batches:
        batch = model.tokenize(chunk, max_length=max_length)
        ids, mask = batch["input_ids"], batch["attention_mask"]
        cache = run_with_cache(model, ids, mask, sites=sites, logits=True)
        total, count = _next_token_ce(cache.logits, ids, mask)
        ce["clean"][0] += total
        ce["clean"][1] += count
        keep = mask.bool().clone()
        keep[:, 0] = False
        x_in = cache[sae.site].reshape(*ids.shape, -1)[keep].float().to(sae.W_enc.device)  # [n, d_in]
        y = cache[target].reshape(*ids.shape, -1)[keep].float().to(sae.W_enc.device)  # [n, d_out]
        f = sae.encode(x_in.to(sae.W_enc.dtype)).float()  # [n, d_sae]
        y_hat = sae.decode(f.to(sae.W_enc.dtype), x_in.to(sae.W_enc.dtype)).float()
        sum_x = y.sum(0) if sum_x is None else sum_x + y.sum(0)
        sum_sq_x += y.pow(2).sum().item()
        sum_err += (y - y_hat).pow(2).sum().item()
        n_tok += y.shape[0]
        l0_sum += (f > 0).sum().item()
        ever_active |= (f > 0).any(0).cpu()
        bar.update()
    if n_tok == 0:
        raise ValueError("The texts have no tokens past BOS: give texts of at least one token.")
    mean = sum_x / n_tok  # [d_out]
    total_var = sum_sq_x - n_tok * mean.pow(2).sum().item()  # sum |x - mean|^2
    # Pass 2: the spliced and ablated losses.
    for chunk in batches:
        batch = model.tokenize(chunk, max_length=max_length)
        ids, mask = batch["input_ids"], batch["attention_mask"]
        ablations = {
            "spliced": splice_edits(sae, skip_first=True),
            "zero": {target: lambda a: torch.cat([a[:, :1], torch.zeros_like(a[:, 1:])], dim=1)},
            "mean": {target: lambda a: torch.cat([a[:, :1], mean.to(a).reshape(a.shape[2:]).expand_as(a[:, 1:])], dim=1)},
        }
        for name, edits in ablations.items():
            logits = run_with_cache(model, ids, mask, edits=edits, logits=True).logits
            total, count = _next_token_ce(logits, ids, mask)
            ce[name][0] += total
            ce[name][1] += count
        bar.update()
    bar.close()
    if ce["clean"][1] == 0:
        raise ValueError("The texts are too short to score next tokens: give texts of at least two tokens.")
    loss = {k: v[0] / v[1] for k, v in ce.items()}

    def recovered(base: float) -> float:
        gap = base - loss["clean"]
        if abs(gap) < 1e-9:
            raise ValueError(f"Ablating {target} does not change the loss on these texts ({base:.6f}): CE loss "
                             "recovered is undefined; use more or longer texts, or another site.")
        return (base - loss["spliced"]) / gap

    if total_var <= 0:
        raise ValueError(f"The activations at {target} do not vary over these texts: variance explained is undefined.")
    return SAEEval(
        site=target, n_tokens=n_tok, variance_explained=1 - sum_err / total_var, mse=sum_err / n_tok,
        l0=l0_sum / n_tok, dead_share=1 - ever_active.float().mean().item(),
        ce_clean=loss["clean"], ce_spliced=loss["spliced"], ce_zero_ablation=loss["zero"],
        ce_mean_ablation=loss["mean"], ce_recovered_zero=recovered(loss["zero"]),
        ce_recovered_mean=recovered(loss["mean"]),
    )
