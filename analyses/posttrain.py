"""`run_posttrain`: a short LoRA fine-tune on step-by-step arithmetic, checkpointed every N steps.

Produces a post-trained model to compare with the base one (`metalens.circuits.run_emergent_heads`),
offline. The 262k-row embedding (most of gemma-3-270m's weights) stays frozen; LoRA adapters on
the attention and MLP projections of the last `lora_layers` blocks train, and the loss is
computed only on solution tokens so the huge LM head is evaluated at few positions.
"""
from __future__ import annotations

import json
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

import metalens
from metalens.checkpoints import META_FILE
from metalens.circuits.accuracy import generation_accuracy
from metalens.report import save_json
from metalens.sites import FINAL_NORM
from metalens.stats import paired_test
from metalens.tasks.arithmetic import make_problem, make_problems

TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
FORMAT_VERSION = 1


@dataclass
class PosttrainConfig:
    """Hyper-parameters of the run (saved beside every checkpoint)."""

    steps: int = 30
    save_every: int = 5
    batch_size: int = 4
    lr: float = 3e-3
    lora_rank: int = 8
    lora_layers: int | None = 6  # adapt only the last N blocks: no backward pass through the others
    levels: tuple[int, ...] = (1, 2, 3)
    n_eval: int = 24  # held-out problems, graded before and after
    heldout_seed: int = 1000  # seed of the held-out split (saved in the metadata; training skips its questions)
    max_new_tokens: int = 26
    seed: int = 0
    merge_final: bool = True  # also save the merged final model, loadable by metalens.load_model


@dataclass
class PosttrainResult:
    """Accuracy before/after on the held-out split, the training curve and where the checkpoints are."""

    accuracy_before: dict
    accuracy_after: dict
    heldout: dict  # {"seed", "levels", "n", "problems"}: the split both accuracies were measured on
    config: PosttrainConfig
    curve: list[dict] = field(default_factory=list)  # step, loss, heldout_token_acc
    checkpoints: list[str] = field(default_factory=list)
    metadata: dict = field(default_factory=dict)
    seconds: float = 0.0
    out: str | None = None  # the run directory (checkpoints, final model); None: nothing was saved
    change: dict = field(default_factory=dict)  # after - before over the same problems: paired test (0/1 grades)

    def save(self, path) -> Path:
        """Write results.json and report.html into `path` (checkpoints stay where the run wrote them)."""
        path = Path(path)
        data = {**asdict(self), "config": asdict(self.config), "format": {"name": "posttrain-results",
                                                                           "version": FORMAT_VERSION}}
        save_json(path / "results.json", data)
        _report(path, self)
        return path

    @classmethod
    def load(cls, path) -> "PosttrainResult":
        """The result `save` wrote into `path`."""
        file = Path(path) / "results.json"
        if not file.exists():
            raise FileNotFoundError(f"No results.json in {path}: point at a `metalens posttrain` output directory.")
        data = json.loads(file.read_text())
        version = data.pop("format", {}).get("version", 1)
        if version > FORMAT_VERSION:
            raise ValueError(f"{file} is format version {version}; this metalens reads up to {FORMAT_VERSION}: "
                             "upgrade metalens to read it.")
        cfg = data.pop("config")
        return cls(**data, config=PosttrainConfig(**{**cfg, "levels": tuple(cfg["levels"])}))


def _batch(model, problems):
    """Right-padded prompt+solution+eos ids, and labels that are -100 outside the solution."""
    tok = model.tokenizer
    texts = [p.prompt + p.solution + tok.eos_token for p in problems]
    batch = model.tokenize(texts)
    labels = batch["input_ids"].clone()
    labels[batch["attention_mask"] == 0] = -100
    for i, p in enumerate(problems):
        n_prompt = len(tok(p.prompt)["input_ids"])
        labels[i, :n_prompt] = -100
    return batch["input_ids"], batch["attention_mask"], labels


def _solution_logits(model, input_ids, attention_mask, labels, grad: bool) -> tuple[Tensor, Tensor]:
    """Logits `[n_label_tokens, vocab]` only where the next token is a label, and those targets.

    The pass stops at the final norm; only the solution positions go through the unembedding.
    """
    cache = metalens.run_with_cache(model, input_ids, attention_mask, sites=[FINAL_NORM], grad=grad)
    hidden = cache[FINAL_NORM]  # [batch, pos, d_model]
    targets = labels[:, 1:]
    keep = targets != -100
    with torch.set_grad_enabled(grad):
        logits = model.final_logits(hidden[:, :-1][keep])
    return logits, targets[keep]


def _heldout_token_acc(model, problems) -> float:
    """Teacher-forced fraction of solution tokens predicted exactly (cheap progress signal)."""
    logits, targets = _solution_logits(model, *_batch(model, problems), grad=False)
    return (logits.argmax(-1) == targets).float().mean().item()


def run_posttrain(model, config: PosttrainConfig | None = None, *, out=None, progress: bool = True) -> PosttrainResult:
    """Fine-tune `model` with LoRA on step-by-step arithmetic solutions; grade greedy answers on a
    held-out split before and after.

    model: a loaded model or a name. It is trained in place: its weights end up post-trained (the
    LoRA update merged), so load the base again to compare. With `out`, writes a checkpoint
    (LoRA adapter) every `save_every` steps, the merged final model, results.json and
    report.html; every checkpoint's metadata records the held-out split, which
    `metalens.circuits.run_emergent_heads` reads to grade on the same problems.
    """
    from peft import LoraConfig, get_peft_model

    cfg = config or PosttrainConfig()
    start = time.time()
    torch.manual_seed(cfg.seed)
    model = model if isinstance(model, metalens.Model) else metalens.load_model(str(model))
    out_dir = Path(out) if out is not None else None
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
    heldout = make_problems(cfg.n_eval, levels=cfg.levels, seed=cfg.heldout_seed)
    held_q = {p.question for p in heldout}
    split = {"seed": cfg.heldout_seed, "levels": list(cfg.levels), "n": len(heldout),
             "problems": [p.to_dict() for p in heldout]}
    log = print if progress else (lambda *a, **k: None)
    before = generation_accuracy(model, heldout, cfg.max_new_tokens)
    log(f"[posttrain] held-out accuracy before: {_acc(before)} {before['by_level']}")

    layers = None
    if cfg.lora_layers:
        layers = list(range(max(0, model.n_layers - cfg.lora_layers), model.n_layers))
    lora = LoraConfig(r=cfg.lora_rank, lora_alpha=2 * cfg.lora_rank, lora_dropout=0.0, target_modules=TARGETS,
                      layers_to_transform=layers)
    peft_model = get_peft_model(model.hf, lora)  # injects the adapters into model.hf's own modules
    params = [p for p in peft_model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / 10) * max(0.1, 1 - s / cfg.steps))
    rng = random.Random(cfg.seed)
    curve, ckpts = [], []
    meta = {"base_model": model.name, "config": asdict(cfg), "heldout": split, **model.metadata()}
    probe = heldout[:12]

    def checkpoint(step, loss):
        peft_model.eval()
        acc = _heldout_token_acc(model, probe)
        peft_model.train()
        curve.append({"step": step, "loss": loss, "heldout_token_acc": acc})
        where = ""
        if out_dir is not None:
            path = out_dir / f"step-{step:05d}"
            peft_model.save_pretrained(path)
            save_json(path / META_FILE, {**meta, "step": step, "loss": loss, "heldout_token_acc": acc})
            ckpts.append(str(path))
            where = f" -> {path}"
        log(f"[posttrain] step {step}: loss {loss:.3f}, held-out token acc {acc:.3f}{where}")

    checkpoint(0, float("nan"))
    peft_model.train()
    loss_ema = None
    for step in range(1, cfg.steps + 1):
        batch = []
        while len(batch) < cfg.batch_size:
            p = make_problem(rng, rng.choice(cfg.levels))
            if p.question not in held_q:
                batch.append(p)
        logits, targets = _solution_logits(model, *_batch(model, batch), grad=True)
        loss = torch.nn.functional.cross_entropy(logits.float(), targets)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        loss_ema = loss.item() if loss_ema is None else 0.8 * loss_ema + 0.2 * loss.item()
        if step % cfg.save_every == 0 or step == cfg.steps:
            checkpoint(step, loss_ema)
    peft_model.eval()
    merged = peft_model.merge_and_unload()
    post = metalens.Model(merged, model.tokenizer, name=f"{model.name}-posttrained", revision=f"step{cfg.steps}")
    after = generation_accuracy(post, heldout, cfg.max_new_tokens)
    log(f"[posttrain] held-out accuracy after: {_acc(after)} {after['by_level']}")
    if out_dir is not None and cfg.merge_final:
        final = out_dir / "final"
        merged.save_pretrained(final)
        model.tokenizer.save_pretrained(final)
        save_json(final / META_FILE, {**meta, "step": cfg.steps, "merged": True})
    change = paired_test(np.asarray(after["correct"], float), np.asarray(before["correct"], float)).to_dict()
    log(f"[posttrain] paired change over the same {change['n']} problems: {change['mean_diff']:+.3f} "
        f"[{change['low']:+.3f}, {change['high']:+.3f}]")
    result = PosttrainResult(before, after, split, cfg, curve, ckpts, meta, time.time() - start,
                             str(out_dir) if out_dir is not None else None, change)
    if out_dir is not None:
        result.save(out_dir)
    return result


def _acc(acc: dict) -> str:
    """'0.292 [0.149, 0.492] (n=24)': accuracy with its Wilson 95 % interval."""
    low, high = acc.get("low", float("nan")), acc.get("high", float("nan"))
    return f"{acc['accuracy']:.3f} [{low:.3f}, {high:.3f}] (n={acc['n']})"


def _report(out: Path, result: PosttrainResult) -> None:
    import plotly.graph_objects as go

    from metalens.report import write_report

    steps = [c["step"] for c in result.curve]
    fig = go.Figure()
    fig.add_scatter(x=steps, y=[c["loss"] for c in result.curve], name="train loss (EMA)")
    fig.add_scatter(x=steps, y=[c["heldout_token_acc"] for c in result.curve], name="held-out token acc", yaxis="y2")
    fig.update_layout(xaxis_title="step", yaxis2=dict(overlaying="y", side="right", range=[0, 1]))
    rows = [{"when": when, "accuracy": acc["accuracy"], "95% CI": f"[{acc.get('low', float('nan')):.3f}, "
             f"{acc.get('high', float('nan')):.3f}]", "n": acc["n"], **{f"level {k}": v for k, v in acc["by_level"].items()}}
            for when, acc in (("before", result.accuracy_before), ("after", result.accuracy_after))]
    if result.change:
        c = result.change
        rows.append({"when": "after - before (paired over problems)", "accuracy": c["mean_diff"],
                     "95% CI": f"[{c['low']:+.3f}, {c['high']:+.3f}]", "n": c["n"]})
    examples = [{"before": b, "after": a} for b, a in zip(result.accuracy_before["completions"][:8], result.accuracy_after["completions"][:8])]
    write_report(out / "report.html", "Post-training on step-by-step arithmetic",
                 [("Held-out accuracy (greedy)", rows), ("Training curve", fig), ("Example completions", examples)],
                 result.metadata)
