"""Attribution patching over an SAE's features at one site, and the exact patching it approximates.

The SAE is spliced into the forward pass with its error term kept (Marks et al. 2024, "Sparse
Feature Circuits"): the site's activation x becomes `decode(f) + (x - decode(encode(x)))`, which is x
itself, so the model computes what it computed before, but the features f are now a node of the
graph. As for heads (`attribution.py`), one clean forward/backward pass gives every feature's estimated
patching effect: attribution_i = dMetric/df_i x (f_i(corrupted) - f_i(clean)), summed over positions,
one value per pair; the error term gets its own score. The integrated-gradients variant ("ig", as
EAP-IG for heads) averages the gradient over `steps` points on the straight path from the corrupted
site activation to the clean one (features and error term interpolated together, the rest of the
run clean), so the scores plus the error's add up to the effect of patching the whole site.
The exact check patches feature i's activations (every position) from the corrupted run into the
clean one, holding the clean run's error term, and reruns the model. Both treat the features as the
node: a patched activation is decoded as it is, not passed through the encoder's nonlinearity again
(for TopK, the clean token may then hold k + 1 active features).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from metalens.circuits.metrics import TaskBatch, metric_per_pair, prepare, task_forward
from metalens.forward import run_with_cache
from metalens.sae.dictionary import SAE
from metalens.sites import resolve_site


def check_sae_fits(model, sae: SAE) -> SAE:
    """The SAE on the model's device in float32 (float64 for a float64 model), after refusing one that cannot be spliced into `model`.

    Refused (ValueError, saying what to do): no site, a site the model lacks, or an activation width
    at the site (or a transcoder's out_site) other than the SAE's d_in (d_out), checked on a one-token pass.
    """
    if not isinstance(sae, SAE):
        raise TypeError(f"sae must be a metalens.sae.SAE (load one with metalens.sae.load_sae), not {type(sae).__name__}.")
    if sae.site is None:
        raise ValueError("This SAE names no site: set sae.site to the TransformerLens hook it was trained on.")
    sites = [sae.site, sae.out_site] if sae.is_transcoder else [sae.site]
    for site in sites:
        resolve_site(model, site)  # an unknown site is refused with the valid names
    ids = torch.tensor([[model.tokenizer.bos_token_id or model.tokenizer.eos_token_id or 0]], device=model.device)
    cache = run_with_cache(model, ids, sites=sites)
    for site, width, name in zip(sites, (sae.d_in, sae.d_out), ("d_in", "d_out")):
        got = cache[site].reshape(1, 1, -1).shape[-1]
        if got != width:
            trained = f" (trained on {sae.model})" if sae.model else ""
            raise ValueError(f"The activation at {site} of {model.name} has width {got}, the SAE's {name} is {width}"
                             f"{trained}: it belongs to another site or model; pass the SAE trained on this one.")
    return sae.to(model.device, torch.float64 if model.dtype == torch.float64 else torch.float32)


def feature_edits(sae: SAE, store: dict, *, grad: bool = False, replace=None, toward=None, alpha: float = 1.0) -> dict:
    """`run_with_cache` edits splicing the SAE in with its error term: the site becomes decode(f) + error.

    store gets "x" (the encoder's input), "target" (the activation replaced, flat), "f" [batch, pos,
    d_sae] and "error" [batch, pos, d_out], the last two leaves requiring grad when `grad`.
    replace: f -> f', the features written instead (exact patching), the error term unchanged.
    toward: (f, target) of another run (the corrupted one); the written features and error term are
    then that run's plus `alpha` times the way to this run's (alpha 0 writes its target exactly, 1 this run's).
    """
    def spliced(x: Tensor, target: Tensor) -> Tensor:
        """x [batch, pos, d_in] the encoder's input, target the activation to replace (same site or out_site)."""
        flat_t = target.reshape(*target.shape[:2], -1).detach().to(x.dtype)
        f = sae.encode(x)  # [batch, pos, d_sae]
        error = flat_t - sae.decode(f, x)  # what the SAE misses
        if toward is not None:
            f_src, t_src = toward
            e_src = t_src - sae.decode(f_src, x)  # decoded with this run's x, so alpha 0 writes t_src itself
            f, error = f_src + alpha * (f - f_src), e_src + alpha * (error - e_src)
        f, error = f.detach(), error.detach()
        if grad:
            f.requires_grad_(True), error.requires_grad_(True)
        store.update(x=x, target=flat_t, f=f, error=error)
        written = replace(f) if replace is not None else f
        return (sae.decode(written, x) + error).to(target.dtype).reshape(target.shape)

    def flat(act: Tensor) -> Tensor:
        return act.reshape(*act.shape[:2], -1).detach().to(sae.W_enc.dtype)

    if not sae.is_transcoder:
        return {sae.site: lambda act: spliced(flat(act), act)}
    seen = {}

    def read(act: Tensor) -> None:
        seen["x"] = flat(act)

    return {sae.site: read, sae.out_site: lambda act: spliced(seen.pop("x"), act)}


def feature_run(model, batch: TaskBatch, sae: SAE, ids: Tensor, *, grad: bool = False, replace=None, toward=None,
                alpha: float = 1.0) -> tuple[Tensor, dict]:
    """([batch, vocab] last-position logits, the store of `feature_edits`) of the spliced model on `ids`."""
    store = {}
    edits = feature_edits(sae, store, grad=grad, replace=replace, toward=toward, alpha=alpha)
    logits, _ = task_forward(model, batch, ids, edits=edits, grad=grad)
    return logits, store


def _check_metric(batch: TaskBatch) -> None:
    if batch.metric == "kl":
        raise ValueError("The kl metric is 0 with a zero gradient at the clean run, so attribution patching gives 0 "
                         "for every feature: use logit_diff, logprob or prob_diff.")


@dataclass
class FeatureAttribution:
    """Per-pair scores of every feature at one site, the error term's, and the activations they came from."""

    scores: Tensor  # [n_pairs, d_sae] estimated metric change when the feature is patched from corrupted
    error: Tensor  # [n_pairs] the same for the SAE's error term
    f_clean: Tensor  # [n_pairs, d_sae] activation summed over the clean prompt's tokens
    f_corrupted: Tensor  # [n_pairs, d_sae] the same on the corrupted prompt
    method: str  # "attribution" or "ig"
    steps: int  # gradient points (1 for attribution)


def attribute_features(model, task, sae: SAE, method: str = "attribution", steps: int = 5) -> FeatureAttribution:
    """Every feature's estimated metric change per pair when its activations (every position) are
    patched from the corrupted run into the clean one (see the module docstring).

    method: "attribution" (the gradient at the clean run) or "ig" (`steps` midpoints between the corrupted
    and clean site activations). Pass a float32 model (see `in_float32`).
    """
    if method not in ("attribution", "ig"):
        raise ValueError(f"Unknown method {method!r}: use 'attribution' or 'ig'.")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be a positive integer, not {steps!r}.")
    sae = check_sae_fits(model, sae)
    batch = prepare(model, task)
    _check_metric(batch)
    with torch.no_grad():
        _, corr = feature_run(model, batch, sae, batch.corrupted_ids)
        _, clean = feature_run(model, batch, sae, batch.clean_ids)
    toward = (corr["f"], corr["target"])
    alphas = [1.0] if method == "attribution" else [(i + 0.5) / steps for i in range(steps)]
    g_f, g_e = torch.zeros_like(clean["f"]), torch.zeros_like(clean["error"])
    for alpha in alphas:  # alpha 1: the clean run, 0: the corrupted site activation
        with torch.enable_grad():
            logits, store = feature_run(model, batch, sae, batch.clean_ids, grad=True, toward=toward, alpha=alpha)
            # Pairs do not interact in a batch, so the sum's gradient at pair p is p's own metric's gradient.
            value = metric_per_pair(batch, logits, logits.detach()).sum()
            df, de = torch.autograd.grad(value, [store["f"], store["error"]])
        g_f += df / len(alphas)
        g_e += de / len(alphas)
    keep = batch.mask[:, :, None].to(g_f.dtype)  # padding carries no signal
    e_corr = corr["target"] - sae.decode(corr["f"], clean["x"])  # as `feature_edits` writes it at alpha 0
    scores = ((corr["f"] - clean["f"]) * g_f * keep).sum(1)  # [batch, d_sae]
    error = ((e_corr - clean["error"]) * g_e * keep).sum((1, 2))  # [batch]
    return FeatureAttribution(scores.float().cpu(), error.float().cpu(), (clean["f"] * keep).sum(1).float().cpu(),
                              (corr["f"] * keep).sum(1).float().cpu(), method, len(alphas))


@torch.no_grad()
def patch_features_exact(model, task, sae: SAE, features) -> Tensor:
    """[n_pairs, len(features)] exact change of each pair's metric when one feature's activation (every
    position) is taken from the corrupted run into the clean one (the clean error term kept)."""
    sae = check_sae_fits(model, sae)
    batch = prepare(model, task)
    _check_metric(batch)
    clean_logits, _ = feature_run(model, batch, sae, batch.clean_ids)
    _, corr = feature_run(model, batch, sae, batch.corrupted_ids)
    base = metric_per_pair(batch, clean_logits, clean_logits)
    out = torch.zeros(len(batch.last), len(features))  # float32, as the metric
    for j, i in enumerate(features):
        def swap(f: Tensor, i: int = int(i)) -> Tensor:
            f = f.clone()
            f[..., i] = corr["f"][..., i]
            return f

        logits, _ = feature_run(model, batch, sae, batch.clean_ids, replace=swap)
        out[:, j] = (metric_per_pair(batch, logits, clean_logits) - base).cpu()
    return out


@torch.no_grad()
def patch_site_exact(model, task, sae: SAE) -> Tensor:
    """[n_pairs] exact change of each pair's metric when the SAE's whole target activation (every position)
    is taken from the corrupted run: what the features' scores and the error term's share out."""
    sae = check_sae_fits(model, sae)
    batch = prepare(model, task)
    _check_metric(batch)
    clean_logits, _ = feature_run(model, batch, sae, batch.clean_ids)
    _, corr = feature_run(model, batch, sae, batch.corrupted_ids)
    logits, _ = feature_run(model, batch, sae, batch.clean_ids, toward=(corr["f"], corr["target"]), alpha=0.0)
    base = metric_per_pair(batch, clean_logits, clean_logits)
    return (metric_per_pair(batch, logits, clean_logits) - base).float().cpu()
