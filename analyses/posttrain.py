"""`posttrain`: a short LoRA fine-tune on step-by-step arithmetic, checkpointed every N steps.

Produces a post-trained model to compare with the base one (metalens.circuits.compare), offline.
The 262k-row embedding (most of gemma-3-270m's weights) stays frozen; LoRA adapters on the
attention and MLP projections of the last `lora_layers` blocks train, and the loss is computed only on solution tokens so the
huge LM head is evaluated at few positions.
"""
from __future__ import annotations

import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

import metalens
from metalens.circuits.accuracy import generation_accuracy
from metalens.checkpoints import META_FILE
from metalens.tasks.arithmetic import make_problem, make_problems
from metalens.report import save_json

TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


@dataclass
class PosttrainConfig:
    """Hyper-parameters of the run (saved beside every checkpoint)."""

    model: str = "gemma-3-270m"
    steps: int = 30
    save_every: int = 5
    batch_size: int = 4
    lr: float = 3e-3
    lora_rank: int = 8
    lora_layers: int | None = 6  # adapt only the last N blocks: no backward pass through the others
    levels: tuple[int, ...] = (1, 2, 3)
    n_eval: int = 24
    max_new_tokens: int = 26
    seed: int = 0
    device: str | None = None
    merge_final: bool = True  # also save the merged final model, loadable by metalens.load_model


@dataclass
class PosttrainResult:
    """Accuracy before/after, the loss curve and where the checkpoints are."""

    out_dir: str
    accuracy_before: dict
    accuracy_after: dict
    curve: list[dict] = field(default_factory=list)  # step, loss, heldout_token_acc
    checkpoints: list[str] = field(default_factory=list)
    seconds: float = 0.0


def _batch(model, problems, device):
    """Right-padded prompt+solution+eos ids, and labels that are -100 outside the solution."""
    tok = model.tokenizer
    texts = [p.prompt + p.solution + tok.eos_token for p in problems]
    batch = model.tokenize(texts)
    labels = batch["input_ids"].clone()
    labels[batch["attention_mask"] == 0] = -100
    for i, p in enumerate(problems):
        n_prompt = len(tok(p.prompt)["input_ids"])
        labels[i, :n_prompt] = -100
    return batch["input_ids"].to(device), batch["attention_mask"].to(device), labels.to(device)


def _solution_logits(hf, input_ids, attention_mask, labels):
    """Logits only where a next token is a label: [n_label_tokens, vocab] and targets."""
    base = hf.get_base_model() if hasattr(hf, "get_base_model") else hf
    hidden = base.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
    targets = labels[:, 1:]
    keep = targets != -100
    logits = base.lm_head(hidden[:, :-1][keep])
    cap = getattr(base.config, "final_logit_softcapping", None)
    if cap:
        logits = torch.tanh(logits / cap) * cap
    return logits, targets[keep]


@torch.no_grad()
def _heldout_token_acc(model, hf, problems, device) -> float:
    """Teacher-forced fraction of solution tokens predicted exactly (cheap progress signal)."""
    logits, targets = _solution_logits(hf, *_batch(model, problems, device))
    return (logits.argmax(-1) == targets).float().mean().item()


def posttrain(out_dir: str | Path, config: PosttrainConfig | None = None, verbose: bool = True,
              model: metalens.Model | None = None) -> PosttrainResult:
    """Fine-tune `config.model` with LoRA on arithmetic solutions; checkpoint every `save_every` steps.

    Pass an already loaded `model` (e.g. a tiny test model) to skip loading `config.model`;
    it is modified in place (LoRA merged into its weights).
    """
    from peft import LoraConfig, get_peft_model

    cfg = config or PosttrainConfig()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    start = time.time()
    torch.manual_seed(cfg.seed)
    model = model or metalens.load_model(cfg.model, device=cfg.device)
    device = model.device
    heldout = make_problems(cfg.n_eval, levels=cfg.levels, seed=cfg.seed + 1000)
    held_q = {p.question for p in heldout}
    log = print if verbose else (lambda *a, **k: None)
    before = generation_accuracy(model, heldout, cfg.max_new_tokens)
    log(f"[posttrain] held-out accuracy before: {before['accuracy']:.3f} (lenient {before['lenient_accuracy']:.3f}) {before['by_level']}")

    layers = None
    if cfg.lora_layers:
        layers = list(range(max(0, model.n_layers - cfg.lora_layers), model.n_layers))
    lora = LoraConfig(r=cfg.lora_rank, lora_alpha=2 * cfg.lora_rank, lora_dropout=0.0, target_modules=TARGETS,
                      layers_to_transform=layers)
    peft_model = get_peft_model(model.hf, lora)
    params = [p for p in peft_model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / 10) * max(0.1, 1 - s / cfg.steps))
    rng = random.Random(cfg.seed)
    curve, ckpts = [], []
    meta_base = {"base_model": cfg.model, "config": asdict(cfg), **model.metadata()}
    probe = heldout[:12]

    def checkpoint(step, loss):
        peft_model.eval()
        acc = _heldout_token_acc(model, peft_model, probe, device)
        peft_model.train()
        curve.append({"step": step, "loss": loss, "heldout_token_acc": acc})
        path = out / f"step-{step:05d}"
        peft_model.save_pretrained(path)
        save_json(path / META_FILE, {**meta_base, "step": step, "loss": loss, "heldout_token_acc": acc})
        ckpts.append(str(path))
        log(f"[posttrain] step {step}: loss {loss:.3f}, held-out token acc {acc:.3f} -> {path}")

    checkpoint(0, float("nan"))
    peft_model.train()
    loss_ema = None
    for step in range(1, cfg.steps + 1):
        batch = []
        while len(batch) < cfg.batch_size:
            p = make_problem(rng, rng.choice(cfg.levels))
            if p.question not in held_q:
                batch.append(p)
        logits, targets = _solution_logits(peft_model, *_batch(model, batch, device))
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
    post = metalens.Model(merged, model.tokenizer, name=f"{cfg.model}-posttrained", revision=f"step{cfg.steps}")
    after = generation_accuracy(post, heldout, cfg.max_new_tokens)
    log(f"[posttrain] held-out accuracy after: {after['accuracy']:.3f} (lenient {after['lenient_accuracy']:.3f}) {after['by_level']}")
    if cfg.merge_final:
        final = out / "final"
        merged.save_pretrained(final)
        model.tokenizer.save_pretrained(final)
        save_json(final / META_FILE, {**meta_base, "step": cfg.steps, "merged": True})
    result = PosttrainResult(str(out), before, after, curve, ckpts, time.time() - start)
    save_json(out / "results.json", {**asdict(result), "config": asdict(cfg), "metadata": meta_base})
    _report(out, result, meta_base)
    return result


def _report(out: Path, result: PosttrainResult, meta: dict) -> None:
    import plotly.graph_objects as go

    from metalens.report import write_report

    steps = [c["step"] for c in result.curve]
    fig = go.Figure()
    fig.add_scatter(x=steps, y=[c["loss"] for c in result.curve], name="train loss (EMA)")
    fig.add_scatter(x=steps, y=[c["heldout_token_acc"] for c in result.curve], name="held-out token acc", yaxis="y2")
    fig.update_layout(xaxis_title="step", yaxis2=dict(overlaying="y", side="right", range=[0, 1]))
    rows = [{"when": "before", "accuracy": result.accuracy_before["accuracy"], "lenient": result.accuracy_before["lenient_accuracy"], **{f"level {k}": v for k, v in result.accuracy_before["by_level"].items()}},
            {"when": "after", "accuracy": result.accuracy_after["accuracy"], "lenient": result.accuracy_after["lenient_accuracy"], **{f"level {k}": v for k, v in result.accuracy_after["by_level"].items()}}]
    examples = [{"before": b, "after": a} for b, a in zip(result.accuracy_before["completions"][:8], result.accuracy_after["completions"][:8])]
    write_report(out / "report.html", "Post-training on step-by-step arithmetic",
                 [("Held-out accuracy (greedy)", rows), ("Training curve", fig), ("Example completions", examples)], meta)
