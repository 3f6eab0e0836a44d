"""A tiny random model in which a topic rule is steerable by construction, for MENTOR's sensitivity tests.

A random model does not write about the ocean when steered; this plant makes one that does, so the tiny
pipeline can show a detection. Two hooks through `metalens.hooks`, nothing in the weights:
(a) a prompt that mentions the topic (`cue`, e.g. the rule stated in the user turn) carries `CODE` x the
    block's mean residual norm along a seeded unit direction u at `resid_post(layer)`, at every position,
    so MENTOR's rule vector (rule in the prompt minus not) points along u;
(b) wherever the block's output (steering included) projects on u beyond one residual norm, the topic
    token's logit rises by `GAIN` logits per residual norm beyond it: steering along the rule vector makes
    the model write the topic token; unsteered text (projection ~ 1/sqrt(d_model)) is left as it was.
"""
from __future__ import annotations

import contextlib

import torch

import metalens
from metalens.sites import FINAL_NORM, resid_post, resid_pre

CODE = 2.0  # hook (a): residual norms along u in a prompt that mentions the topic
GAIN = 50.0  # hook (b): logits of the topic token per residual norm of projection beyond one


@contextlib.contextmanager
def topic_follower(model, cue: str, token: str, layer: int, texts: list[str], seed: int = 0):
    """Within the block, `model` represents `cue` along u at block `layer` and writes `token` when u is active.

    `texts` measure the block's mean residual norm (at their last token, unplanted).
    """
    ids = model.tokenizer(token, add_special_tokens=False)["input_ids"]
    if len(ids) != 1:
        raise ValueError(f"{token!r} is {len(ids)} tokens for this tokenizer; the plant writes one token.")
    g = torch.Generator().manual_seed(seed)
    u = torch.randn(model.d_model, generator=g)
    u = (u / u.norm()).to(model.device)
    site = resid_post(layer)
    norm = float(metalens.capture(model, texts, [site], positions="last", progress=False,
                                  dtype=torch.float32)[site].norm(dim=-1).mean())
    w = model.hf.get_output_embeddings().weight[ids[0]].detach().float()  # [d_model]
    step = w / w.dot(w)  # along it, a move of x raises the token's logit by exactly x
    state: dict = {}

    def see_ids(module, args, kwargs):  # why: hooks see activations only; a cue row is known by its text
        batch = kwargs.get("input_ids")
        state.clear()
        if batch is not None and batch.dim() == 2:
            state["cue"] = torch.tensor([cue in model.tokenizer.decode(row) for row in batch.tolist()])
        return None

    def add_code(hidden):  # [batch, pos, d_model]
        mask = state.get("cue")
        if mask is None or not mask.any() or len(mask) != hidden.shape[0]:
            return None
        return hidden + (mask[:, None, None].to(hidden.device) * CODE * norm * u).to(hidden.dtype)

    def read_block(hidden):  # the block's output, steering included
        state["push"] = GAIN * torch.relu(hidden.float() @ u / norm - 1)  # [batch, pos]
        return None

    def push(hidden):  # final-norm output [batch, pos, d_model]
        p = state.get("push")
        if p is None or p.shape != hidden.shape[:2] or not p.any():
            return None
        return hidden + (p[..., None] * step).to(hidden.dtype)

    handle = model.hf.register_forward_pre_hook(see_ids, with_kwargs=True)
    try:
        with metalens.hooks(model, {site: add_code, resid_pre(layer + 1): read_block, FINAL_NORM: push}):
            yield u
    finally:
        handle.remove()
