"""A planted emergent head: a "post-trained" copy of a model in which two chosen heads (or, as the control,
the MLPs of their blocks) write each task prompt's answer, for emergent-heads' sensitivity check.

The plant knows the task's pairs (it is built from them) and recognises them by their input
embeddings, which every pass the pipeline makes starts from: token ids, and EAP-IG's inputs
interpolated between a pair's corrupted and clean embeddings (e = corrupted + a (clean - corrupted)).
A recognised row gets, at its last token, a write of size `(2a - 1) x strength` toward its answer:
+1 on the clean prompt (toward its answer), -1 on the corrupted one (toward the other answer, which is
the corrupted prompt's own), linear in between. Rows it does not know (other prompts, generation) pass
unchanged. Hooks through `metalens.hooks`, nothing in the weights:

- where="heads": each planted head's z (`attn.hook_z`, before o_proj) gets `strength x n_h x v`, n_h the
  head's mean |z| at the task prompts' last token (unplanted), v the unit z-direction whose o_proj image
  points most along W_U[answer] - W_U[other] (norms after o_proj not modelled). Zero-ablating the head
  removes the write, so its ablation damage grows with the strength.
- where="mlp" (the control): the MLP output of each planted head's block (`hook_mlp_out`, the residual
  write) gets `strength x m_l x u`, m_l the block's mean |MLP output| at the last token, u the unit
  answer-minus-other unembedding difference. The same task signal enters the same blocks, but no head
  carries it: a head the pipeline then validates as emergent is a false positive.

Strength 0 plants nothing: no hook is installed and every output is the unplanted model's.

Why hooks and not a fine-tune: `metalens posttrain`'s LoRA targets whole projections of whole blocks, so
restricting it to two heads would need per-head gradient masks the core does not have, its effect size
would not be one knob with a unit (steps and learning rate set it only indirectly), and each (strength,
seed) trial would cost a post-training run on top of the pipeline's.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass, field

import torch
from torch import Tensor

import metalens
from metalens.circuits.attention import check_heads
from metalens.circuits.metrics import prepare
from metalens.circuits.tasks import ContrastTask
from metalens.sites import attn_z, mlp_out, resid_pre

UNIT = ("mean output norms of the carrier, written at each task prompt's last token toward its answer: strength 1 adds "
        "to each planted head's z its own mean |z| (unplanted, at the task prompts' last token) along the z-direction "
        "whose o_proj image points most toward W_U[answer] - W_U[other]; in the MLP control, one mean |MLP output| of "
        "that head's block along the unit answer-minus-other unembedding difference")
WHERE = ("heads", "mlp")
MATCH_TOL = 1e-2  # a row is a pair's (interpolated) prompt when off that pair's line by < 1 % of |clean - corrupted|


@dataclass
class PlantedHeads:
    """The plant on `task`'s pairs in `heads` ((layer, head) pairs) with knob `strength` (unit: `UNIT`).

    where="heads" writes through the heads' z; where="mlp" writes the same task signal through the MLP
    output of their blocks instead (the control). `install(model)` (a context manager) measures the
    carriers' norms on the unplanted model and hooks it inside the block; `norms` is set there.
    """

    task: ContrastTask
    heads: list[tuple[int, int]]
    strength: float
    where: str = "heads"
    norms: dict | None = field(default=None, repr=False)  # "L.H" (heads) or "L" (mlp) -> mean norm

    def __post_init__(self):
        self.heads = [(int(l), int(h)) for l, h in self.heads]
        if self.where not in WHERE:
            raise ValueError(f"Unknown plant '{self.where}': use 'heads' (the planted heads carry the change) or "
                             "'mlp' (their blocks' MLPs carry it, the control).")
        if not self.heads or len(set(self.heads)) != len(self.heads):
            raise ValueError(f"Plant at least one head, each once; got {self.heads}.")

    def describe(self) -> dict:
        """What was planted, for results."""
        sites = sorted({attn_z(l) if self.where == "heads" else mlp_out(l) for l, _ in self.heads})
        return {"heads": [list(h) for h in self.heads], "where": self.where, "strength": float(self.strength),
                "unit": UNIT, "norms": self.norms, "sites": sites}

    @torch.no_grad()
    def measure(self, model) -> None:
        """Set `norms`: each carrier's mean output norm at the task's clean prompts' last token (unplanted)."""
        check_heads(model, self.heads)
        batch = prepare(model, self.task)
        layers = sorted({l for l, _ in self.heads})
        site = attn_z if self.where == "heads" else mlp_out
        cache = metalens.run_with_cache(model, batch.clean_ids, batch.mask, sites=[site(l) for l in layers])
        rows = torch.arange(len(batch.last), device=batch.last.device)
        self.norms = {}
        for l, h in self.heads:
            last = cache[site(l)][rows, batch.last].float()  # [batch, head, d_head] or [batch, d_model]
            if self.where == "heads":
                self.norms[f"{l}.{h}"] = float(last[:, h].norm(dim=-1).mean())
            else:
                self.norms[str(l)] = float(last.norm(dim=-1).mean())

    @staticmethod
    def _table(model, batch) -> tuple[list[tuple[Tensor, Tensor, int]], Tensor]:
        """([(clean [n, d], corrupted [n, d], n) per pair], pad embedding [d]) in float32, from the embedding
        module as it is now (its dtype may change under `in_float32`; the table follows it)."""
        embed = model.hf.get_input_embeddings()  # gemma's sqrt(d_model) scale is inside the module
        clean = embed(batch.clean_ids).float()  # [P, pos, d_model]
        corrupted = embed(batch.corrupted_ids).float()
        pad = embed(torch.tensor([[model.tokenizer.pad_token_id]], device=batch.clean_ids.device)).float()[0, 0]
        pairs = [(clean[i, : n], corrupted[i, : n], n) for i, n in enumerate((batch.last + 1).tolist())]
        return pairs, pad

    def _directions(self, model, answer: Tensor, other: Tensor) -> dict:
        """{(layer, head) or layer: [P, d] unit write per pair} toward each pair's answer-minus-other."""
        w_u = model.hf.get_output_embeddings().weight.float()  # [vocab, d_model]
        target = w_u[answer] - w_u[other]  # [P, d_model]
        unit = target / target.norm(dim=-1, keepdim=True).clamp_min(1e-12)
        out = {}
        for l, h in self.heads:
            if self.where == "mlp":
                out[l] = unit
                continue
            w_o = model.layers[l].self_attn.o_proj.weight.float()  # [d_model, n_heads * d_head]
            w_h = w_o[:, h * model.d_head : (h + 1) * model.d_head]  # [d_model, d_head]
            v = target @ w_h  # [P, d_head]: maximises <W_h v, target> at fixed |v|
            out[(l, h)] = v / v.norm(dim=-1, keepdim=True).clamp_min(1e-12)
        return out

    @contextlib.contextmanager
    def install(self, model):
        """Within the block, every forward pass of `model` carries the plant (nothing at strength 0)."""
        self.measure(model)
        if self.strength == 0:
            yield self
            return
        with torch.no_grad():
            batch = prepare(model, self.task)
            directions = self._directions(model, batch.answer, batch.wrong)
        tables: dict = {}  # embedding dtype -> (pairs, pad)
        rows: dict = {}  # this pass: batch size and [(row, last position, 2a - 1, pair)]

        def see_inputs(hidden):  # block 0's input [batch, pos, d_model]: which pair (and where on its line) each row is
            rows.clear()
            x = hidden.detach().float()
            rows.update(batch=x.shape[0], hits=[])
            key = model.hf.get_input_embeddings().weight.dtype
            if key not in tables:
                with torch.no_grad():
                    tables[key] = self._table(model, batch)
            pairs, pad = tables[key]
            for r in range(x.shape[0]):
                hit = _recognise(x[r], pairs, pad)
                if hit is not None:
                    i, alpha = hit
                    rows["hits"].append((r, pairs[i][2] - 1, 2 * alpha - 1, i))
            return None

        def write(key, norm):
            def fn(act):  # z [batch, pos, head, d_head] or mlp_out [batch, pos, d_model]
                if not rows.get("hits") or act.shape[0] != rows["batch"]:
                    return None
                out = act.clone()
                for r, p, sign, i in rows["hits"]:
                    step = (self.strength * norm * sign * directions[key][i]).to(out.device, out.dtype)
                    if self.where == "heads":
                        out[r, p, key[1]] += step
                    else:
                        out[r, p] += step
                return out
            return fn

        if self.where == "heads":
            by_layer: dict[int, list] = {}
            for l, h in self.heads:
                by_layer.setdefault(l, []).append(write((l, h), self.norms[f"{l}.{h}"]))
        else:
            by_layer = {}
            for l, _ in self.heads:  # two planted heads in one block: that block's MLP writes twice
                by_layer.setdefault(l, []).append(write(l, self.norms[str(l)]))

        site = attn_z if self.where == "heads" else mlp_out
        fns = {resid_pre(0): see_inputs, **{site(l): _compose(fs) for l, fs in by_layer.items()}}
        with metalens.hooks(model, fns):
            yield self


def _compose(fns):
    """One hook applying each of `fns` in turn (each returns a replacement or None)."""
    def fn(act):
        for f in fns:
            new = f(act)
            act = act if new is None else new
        return act
    return fn


def _recognise(x: Tensor, pairs, pad: Tensor) -> tuple[int, float] | None:
    """(pair index, a) when row `x` [pos, d_model] is pair i's corrupted + a (clean - corrupted), padded; else None."""
    best = None
    for i, (clean, corrupted, n) in enumerate(pairs):
        if n > x.shape[0]:
            continue
        if x.shape[0] > n and (x[n:] - pad).norm(dim=-1).max() > MATCH_TOL * pad.norm():
            continue
        delta = clean - corrupted  # [n, d_model]
        size = delta.norm()
        if size == 0:
            continue
        off = x[:n] - corrupted
        alpha = float((off * delta).sum() / size**2)
        if (off - alpha * delta).norm() <= MATCH_TOL * size and -MATCH_TOL <= alpha <= 1 + MATCH_TOL:
            if best is None or n > pairs[best[0]][2]:
                best = (i, min(max(alpha, 0.0), 1.0))
    return best
