"""Attribution patching over an SAE's features at one site, and the exact patching it approximates.

The SAE is spliced into the forward pass with its error term kept (Marks et al. 2024, "Sparse
Feature Circuits"): the site's activation x becomes `decode(f) + (x - decode(encode(x)))`, which is x
itself, so the model computes what it computed before, but the features f are now a node of the
graph. As for heads (`attribution.py`), one clean forward/backward pass gives every feature's estimated
patching effect: attribution_i = dMetric/df_i x (f_i(corrupted) - f_i(clean)), summed over positions,
one value per pair. The exact check patches feature i's activations (every position) from the
corrupted run into the clean one, holding the clean run's error term, and reruns the model. Both
treat the features as the node: a patched activation is decoded as it is, not passed through the
encoder's nonlinearity again (for TopK, the clean token may then hold k + 1 active features).
"""
from __future__ import annotations

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


def feature_edits(sae: SAE, store: dict, *, grad: bool = False, replace=None) -> dict:
    """`run_with_cache` edits splicing the SAE in with its error term; the features land in `store["f"]`.

    store["f"]: [batch, pos, d_sae], a leaf requiring grad when `grad`. replace: f -> f', the features
    written instead (exact patching); the error term stays that of the unpatched features.
    """
    def spliced(x: Tensor, target: Tensor) -> Tensor:
        """x [batch, pos, d_in] the encoder's input, target the activation to replace (same or out_site)."""
        flat_t = target.reshape(*target.shape[:2], -1)
        f = sae.encode(x).detach()  # [batch, pos, d_sae]
        error = (flat_t.to(x.dtype) - sae.decode(f, x)).detach()  # what the SAE misses, held fixed
        f = f.requires_grad_(True) if grad else f
        store["f"] = f
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


def feature_run(model, batch: TaskBatch, sae: SAE, ids: Tensor, *, grad: bool = False, replace=None) -> tuple[Tensor, Tensor]:
    """([batch, vocab] last-position logits, [batch, pos, d_sae] features) of the spliced model on `ids`."""
    store = {}
    logits, _ = task_forward(model, batch, ids, edits=feature_edits(sae, store, grad=grad, replace=replace), grad=grad)
    return logits, store["f"]


def _check_metric(batch: TaskBatch) -> None:
    if batch.metric == "kl":
        raise ValueError("The kl metric is 0 with a zero gradient at the clean run, so attribution patching gives 0 "
                         "for every feature: use logit_diff, logprob or prob_diff.")


def attribute_features(model, task, sae: SAE) -> tuple[Tensor, Tensor, Tensor]:
    """(attribution [n_pairs, d_sae], clean features [n_pairs, d_sae], corrupted features [n_pairs, d_sae]).

    attribution[p, i]: the estimated change of pair p's metric when feature i (every position) is
    patched from the corrupted run into the clean one; features are summed over each pair's real
    tokens (a feature's total activation on the prompt). Pass a float32 model (see `in_float32`).
    """
    sae = check_sae_fits(model, sae)
    batch = prepare(model, task)
    _check_metric(batch)
    with torch.no_grad():
        _, f_corr = feature_run(model, batch, sae, batch.corrupted_ids)
    with torch.enable_grad():
        logits, f_clean = feature_run(model, batch, sae, batch.clean_ids, grad=True)
        # Pairs do not interact in a batch, so the sum's gradient at pair p is p's own metric's gradient.
        value = metric_per_pair(batch, logits, logits.detach()).sum()
        (grad,) = torch.autograd.grad(value, f_clean)  # [batch, pos, d_sae]
    keep = batch.mask[:, :, None].to(grad.dtype)  # padding carries no signal
    f_clean = f_clean.detach()
    scores = ((f_corr - f_clean) * grad * keep).sum(1)  # [batch, d_sae]
    return scores.float().cpu(), (f_clean * keep).sum(1).float().cpu(), (f_corr * keep).sum(1).float().cpu()


@torch.no_grad()
def patch_features_exact(model, task, sae: SAE, features) -> Tensor:
    """[n_pairs, len(features)] exact change of each pair's metric when one feature's activation (every
    position) is taken from the corrupted run into the clean one (the clean error term kept)."""
    sae = check_sae_fits(model, sae)
    batch = prepare(model, task)
    _check_metric(batch)
    clean_logits, _ = feature_run(model, batch, sae, batch.clean_ids)
    _, f_corr = feature_run(model, batch, sae, batch.corrupted_ids)
    base = metric_per_pair(batch, clean_logits, clean_logits)
    out = torch.zeros(len(batch.last), len(features))  # float32, as the metric
    for j, i in enumerate(features):
        def swap(f: Tensor, i: int = int(i)) -> Tensor:
            f = f.clone()
            f[..., i] = f_corr[..., i]
            return f

        logits, _ = feature_run(model, batch, sae, batch.clean_ids, replace=swap)
        out[:, j] = (metric_per_pair(batch, logits, clean_logits) - base).cpu()
    return out
