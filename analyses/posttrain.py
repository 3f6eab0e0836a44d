"""`run_posttrain`: short post-training on step-by-step arithmetic, checkpointed every N steps and resumable.

Produces a post-trained model to compare with the base one (`metalens.circuits.run_emergent_heads`),
offline. Two methods: `sft`, supervised fine-tuning on worked solutions (the loss only on solution
tokens, so the huge LM head is evaluated at few positions), and `grpo` (`metalens.analyses.grpo`),
reinforcement learning with the arithmetic grader as a verifiable reward. Either trains LoRA
adapters on the attention and MLP projections of the last `lora_layers` blocks (None: all
blocks), or, with `full`, the weights themselves; the 262k-row embedding (most of gemma-3-270m's
weights, tied to the unembedding) always stays frozen.

Resuming: every checkpoint saves the config in its metadata, and the latest one also the
optimizer, scheduler, sampler and trainable weights (`metalens.analyses.trainer_state`: safetensors
and JSON, no pickle). Running again into the same `out` continues from there with the same config,
and refuses another config naming the keys that differ, unless no training step has finished yet
(only `step-00000`): such an incomplete run is replaced, and the log says so.
"""
from __future__ import annotations

import copy
import json
import math
import random
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

import metalens
from metalens.analyses.trainer_state import (PICKLE_FILE, has_state, load_trainer_state, read_resume_meta,
                                             save_latest_state)
from metalens.checkpoints import META_FILE
from metalens.tasks import generation_accuracy
from metalens.report import save_json
from metalens.sites import FINAL_NORM
from metalens.power import paired_summary
from metalens.tasks.arithmetic import LEVELS, make_problem, make_problems

TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
FORMAT_VERSION = 1
METHODS = ("sft", "grpo")
RESUME_FREE = ("merge_final",)  # config keys a resumed run may change (they do not touch the training)


@dataclass
class PosttrainConfig:
    """Hyper-parameters of the run (saved beside every checkpoint)."""

    steps: int = 30
    save_every: int = 5
    batch_size: int = 4  # problems per step (grpo: each sampled `group_size` times)
    lr: float = 3e-3
    lora_rank: int = 8
    lora_layers: int | None = 6  # train only the last N blocks (None: all); also limits `full`
    levels: tuple[int, ...] = (1, 2, 3)
    n_eval: int = 24  # held-out problems, graded before and after
    heldout_seed: int = 1000  # seed of the held-out split (saved in the metadata; training skips its questions)
    max_new_tokens: int = 26
    seed: int = 0
    merge_final: bool = True  # also save the merged final model, loadable by metalens.load_model
    method: str = "sft"  # sft (worked solutions) or grpo (sampled solutions, graded)
    full: bool = False  # train the weights themselves instead of LoRA adapters (embedding frozen)
    group_size: int = 4  # grpo: completions sampled per problem
    kl_coef: float = 0.04  # grpo: weight of the k3 KL penalty to the base model
    temperature: float = 1.0  # grpo: sampling temperature
    sample_tokens: int = 24  # grpo: new tokens per sampled completion (stops at a newline)
    checkpoint_accuracy: bool = True  # grade greedy answers on the held-out split at every checkpoint

    def __post_init__(self):
        if self.method not in METHODS:
            raise ValueError(f"Unknown method '{self.method}': use one of {METHODS}.")
        if self.method == "grpo" and self.group_size < 2:
            raise ValueError(f"GRPO needs a group of at least 2 samples per problem, not group_size={self.group_size}.")
        for name in ("steps", "save_every", "batch_size", "lora_rank", "max_new_tokens", "sample_tokens"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ValueError(f"{name} must be a positive integer, not {getattr(self, name)!r}.")
        if not isinstance(self.n_eval, int) or self.n_eval < 2:  # the paired before/after interval needs two problems
            raise ValueError(f"n_eval must be an integer >= 2 (held-out problems), not {self.n_eval!r}.")
        if self.lora_layers is not None and (not isinstance(self.lora_layers, int) or self.lora_layers < 0):
            raise ValueError(f"lora_layers must be a number of blocks (0 or None: all), not {self.lora_layers!r}.")
        for name, low in (("lr", 0.0), ("temperature", 0.0), ("kl_coef", None)):
            value = getattr(self, name)
            if not math.isfinite(value) or (low is not None and value <= low) or (low is None and value < 0):
                raise ValueError(f"{name} must be a finite number {'> 0' if low is not None else '>= 0'}, not {value!r}.")
        if not self.levels or any(level not in LEVELS for level in self.levels):
            raise ValueError(f"levels must be arithmetic difficulty levels {sorted(LEVELS)}, not {list(self.levels)}.")


@dataclass
class PosttrainResult:
    """Accuracy before/after on the held-out split, the training curve and where the checkpoints are."""

    accuracy_before: dict
    accuracy_after: dict
    heldout: dict  # {"seed", "levels", "n", "problems"}: the split both accuracies were measured on
    config: PosttrainConfig
    curve: list[dict] = field(default_factory=list)  # step, loss, heldout_token_acc[, accuracy, low, high, reward, kl]
    checkpoints: list[str] = field(default_factory=list)
    metadata: dict = field(default_factory=dict)
    seconds: float = 0.0
    out: str | None = None  # the run directory (checkpoints, final model); None: nothing was saved
    change: dict = field(default_factory=dict)  # after - before over the same problems: paired test (0/1 grades)
    resumed_from: int | None = None  # the checkpoint step this call continued from (None: a fresh run)

    @property
    def finished(self) -> bool:
        """True when the run reached `config.steps` (False after `stop_after`)."""
        return bool(self.accuracy_after)

    def save(self, path) -> Path:
        """Write results.json and report.html into `path` (checkpoints stay where the run wrote them)."""
        path = Path(path)
        data = {**asdict(self), "config": asdict(self.config), "format": {"name": "posttrain-results",
                                                                           "version": FORMAT_VERSION}}
        save_json(path / "results.json", data)
        from metalens.analyses.posttrain_report import write_posttrain_report

        write_posttrain_report(path / "report.html", self)
        return path

    @classmethod
    def load(cls, path) -> PosttrainResult:
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


def sft_step(model, problems, optimizer) -> float:
    """One supervised step: cross-entropy on the worked solutions' tokens (prompt tokens masked)."""
    logits, targets = _solution_logits(model, *_batch(model, problems), grad=True)
    loss = torch.nn.functional.cross_entropy(logits.float(), targets)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return loss.item()


def _trained_blocks(model, cfg: PosttrainConfig) -> list[int] | None:
    """Indices of the blocks that train (None: all)."""
    if not cfg.lora_layers or cfg.lora_layers >= model.n_layers:
        return None
    return list(range(model.n_layers - cfg.lora_layers, model.n_layers))


def _make_trainable(model, cfg: PosttrainConfig):
    """(the module to save, its trainable parameters by name): LoRA adapters or the weights themselves."""
    blocks = _trained_blocks(model, cfg)
    if not cfg.full:
        from peft import LoraConfig, get_peft_model

        lora = LoraConfig(r=cfg.lora_rank, lora_alpha=2 * cfg.lora_rank, lora_dropout=0.0, target_modules=TARGETS,
                          layers_to_transform=blocks)
        module = get_peft_model(model.hf, lora)  # injects the adapters into model.hf's own modules
    else:
        module = model.hf
        frozen = {id(model.hf.get_input_embeddings().weight), id(model.hf.get_output_embeddings().weight)}
        for p in module.parameters():
            p.requires_grad_(id(p) not in frozen)
        for i, block in enumerate(model.layers):
            if blocks is not None and i not in blocks:
                block.requires_grad_(False)
    return module, {n: p for n, p in module.named_parameters() if p.requires_grad}


def _normalised(config: dict) -> dict:
    return json.loads(json.dumps(config))


def _resume_state(out_dir: Path, cfg: PosttrainConfig, log) -> dict | None:
    """The trainer state of `out_dir`'s latest checkpoint, or None for a new run.

    Raises when that run used another config (naming the keys that differ) or left no state. A run
    with no finished training step (only step 0) is incomplete: another config replaces it.
    """
    ckpts = sorted(p for p in out_dir.glob("step-*") if (p / META_FILE).exists())
    if not ckpts:
        return None
    with_state = [p for p in ckpts if has_state(p)]
    if not with_state:
        if any((p / PICKLE_FILE).exists() for p in ckpts):
            raise ValueError(f"{out_dir} holds a {PICKLE_FILE} (a pickle from an older metalens); metalens no longer "
                             "reads pickles, which can run code from whoever wrote them: choose a new --out.")
        raise ValueError(f"{out_dir} holds checkpoints but no trainer state to resume from: choose a new --out.")
    metas = {p: read_resume_meta(p) for p in with_state}
    latest = max(with_state, key=lambda p: metas[p]["step"])
    saved_meta = metas[latest]
    saved = saved_meta["config"]
    want = _normalised(asdict(cfg))
    differ = sorted(k for k in set(saved) | set(want) if k not in RESUME_FREE and saved.get(k) != want.get(k))
    if differ:
        diffs = ", ".join(f"{k} {saved.get(k)!r} -> {want.get(k)!r}" for k in differ)
        if saved_meta["step"] == 0 and len(ckpts) == 1:
            log(f"[posttrain] {out_dir} holds an incomplete run (no training step finished) with another config "
                f"({diffs}): replacing it")
            shutil.rmtree(ckpts[0])
            return None
        raise ValueError(f"{out_dir} holds a run with another config (differs in {diffs}); resume it with the same "
                         "settings, or choose a new --out.")
    return load_trainer_state(latest)


def draw_batch(rng: random.Random, cfg: PosttrainConfig, held_out: set[str]) -> list:
    """One step's problems (held-out questions skipped): the run's one sampler, which `training_problems` replays."""
    batch = []
    while len(batch) < cfg.batch_size:
        p = make_problem(rng, rng.choice(cfg.levels))
        if p.question not in held_out:
            batch.append(p)
    return batch


def training_problems(cfg: PosttrainConfig, steps: int | None = None) -> list:
    """Every problem a run of `cfg` trained on in its first `steps` steps (default: all), in order: the
    sampler replayed from its seed (a resumed run restores the sampler, so it draws the same)."""
    held = {p.question for p in make_problems(cfg.n_eval, levels=cfg.levels, seed=cfg.heldout_seed)}
    rng = random.Random(cfg.seed)
    return [p for _ in range(cfg.steps if steps is None else steps) for p in draw_batch(rng, cfg, held)]


def run_posttrain(model, config: PosttrainConfig | None = None, *, out=None, progress: bool = True,
                  stop_after: int | None = None) -> PosttrainResult:
    """Post-train `model` on step-by-step arithmetic (SFT or GRPO, LoRA or full); grade greedy answers on
    a held-out split before, at every checkpoint and after.

    model: a loaded model or a name. It is trained in place: its weights end up post-trained (the
    LoRA update merged), so load the base again to compare. With `out`, writes a checkpoint (LoRA
    adapter, or the full model) every `save_every` steps, the merged final model, results.json and
    report.html; every checkpoint's metadata records the config and the held-out split, which
    `metalens.circuits.run_emergent_heads` reads to grade on the same problems. If `out` already
    holds checkpoints of this config, training continues from the latest (`model` must be the
    base); another config is refused. `stop_after`: checkpoint at that step and return without
    the final evaluation (`result.finished` is False), e.g. to fit a wall-clock limit.
    """
    cfg = config or PosttrainConfig()
    if stop_after is not None and stop_after < 1:
        raise ValueError(f"stop_after must be a step >= 1, not {stop_after!r}.")
    start = time.time()
    torch.manual_seed(cfg.seed)
    model = model if isinstance(model, metalens.Model) else metalens.load_model(str(model))
    out_dir = Path(out) if out is not None else None
    log = print if progress else (lambda *a, **k: None)
    state = None
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        state = _resume_state(out_dir, cfg, log)
    heldout = make_problems(cfg.n_eval, levels=cfg.levels, seed=cfg.heldout_seed)
    held_q = {p.question for p in heldout}
    split = {"seed": cfg.heldout_seed, "levels": list(cfg.levels), "n": len(heldout),
             "problems": [p.to_dict() for p in heldout]}
    before = state["accuracy_before"] if state else generation_accuracy(model, heldout, cfg.max_new_tokens)
    log(f"[posttrain] held-out accuracy before: {_acc(before)} {before['by_level']}")

    # GRPO's reference is the base: the adapters switched off, or (full) a frozen copy taken before training
    reference = None
    if cfg.method == "grpo" and cfg.full:
        reference = metalens.Model(copy.deepcopy(model.hf).eval().requires_grad_(False), model.tokenizer,
                                   name=model.name, revision=model.revision)
    module, trainable = _make_trainable(model, cfg)
    if cfg.method == "grpo" and not cfg.full:
        reference = module.disable_adapter
    params = list(trainable.values())
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / 10) * max(0.1, 1 - s / cfg.steps))
    rng = random.Random(cfg.seed)
    curve, ckpts, loss_ema, first = [], [], None, 1
    meta = {"base_model": model.name, "config": _normalised(asdict(cfg)), "heldout": split, **model.metadata()}
    probe = heldout[:12]
    last_ckpt: list[Path | None] = [None]
    if state:
        with torch.no_grad():
            for name, value in state["params"].items():
                trainable[name].copy_(value)
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        rng.setstate(state["rng"])
        curve, ckpts, loss_ema, first = state["curve"], state["checkpoints"], state["loss_ema"], state["step"] + 1
        last_ckpt[0] = out_dir / f"step-{state['step']:05d}"
        log(f"[posttrain] resuming {out_dir} from step {state['step']}")

    def checkpoint(step, loss, extra):
        module.eval()
        row = {"step": step, "loss": loss, "heldout_token_acc": _heldout_token_acc(model, probe), **extra}
        if cfg.checkpoint_accuracy:
            acc = generation_accuracy(model, heldout, cfg.max_new_tokens)
            row.update(accuracy=acc["accuracy"], low=acc["low"], high=acc["high"])
        module.train()
        curve.append(row)
        where = ""
        if out_dir is not None:
            path = out_dir / f"step-{step:05d}"
            module.save_pretrained(path)
            if cfg.full:
                model.tokenizer.save_pretrained(path)
            save_json(path / META_FILE, {**meta, **row})
            ckpts.append(str(path))
            save_latest_state(path, last_ckpt[0], {
                "step": step, "params": {n: p.detach().clone() for n, p in trainable.items()},
                "optimizer": opt.state_dict(), "scheduler": sched.state_dict(), "rng": rng.getstate(),
                "curve": curve, "checkpoints": ckpts, "loss_ema": loss_ema, "accuracy_before": before})
            last_ckpt[0] = path
            where = f" -> {path}"
        log(f"[posttrain] step {step}: loss {loss:.3f}, held-out token acc {row['heldout_token_acc']:.3f}"
            + (f", accuracy {row['accuracy']:.3f} [{row['low']:.3f}, {row['high']:.3f}]" if "accuracy" in row else "")
            + where)

    if not state:
        checkpoint(0, float("nan"), {})
    last = min(cfg.steps, stop_after) if stop_after is not None else cfg.steps
    module.train()
    extra: dict = {}
    for step in range(first, last + 1):
        batch = draw_batch(rng, cfg, held_q)
        if cfg.method == "sft":
            loss = sft_step(model, batch, opt)
        else:
            from metalens.analyses.grpo import grpo_step

            stats = grpo_step(model, batch, opt, group_size=cfg.group_size, kl_coef=cfg.kl_coef,
                              temperature=cfg.temperature, max_new_tokens=cfg.sample_tokens,
                              seed=cfg.seed * 1_000_003 + step, reference=reference)
            loss, extra = stats["loss"], {"reward": stats["reward"], "kl": stats["kl"],
                                          "informative_groups": stats["informative"]}
        sched.step()
        loss_ema = loss if loss_ema is None else 0.8 * loss_ema + 0.2 * loss
        if step % cfg.save_every == 0 or step == last:
            checkpoint(step, loss_ema, extra)
    module.eval()
    if last < cfg.steps:
        return PosttrainResult(before, {}, split, cfg, curve, ckpts, meta, time.time() - start,
                               str(out_dir) if out_dir is not None else None,
                               resumed_from=state["step"] if state else None)
    merged = module if cfg.full else module.merge_and_unload()
    post = metalens.Model(merged, model.tokenizer, name=f"{model.name}-posttrained", revision=f"step{cfg.steps}")
    after = generation_accuracy(post, heldout, cfg.max_new_tokens)
    log(f"[posttrain] held-out accuracy after: {_acc(after)} {after['by_level']}")
    if out_dir is not None and cfg.merge_final:
        final = out_dir / "final"
        merged.save_pretrained(final)
        model.tokenizer.save_pretrained(final)
        save_json(final / META_FILE, {**meta, "step": cfg.steps, "merged": True})
    change = paired_summary(np.asarray(after["correct"], float), np.asarray(before["correct"], float))
    log(f"[posttrain] paired change over the same {change['n']} problems: {change['mean_diff']:+.3f} "
        f"[{change['low']:+.3f}, {change['high']:+.3f}]")
    result = PosttrainResult(before, after, split, cfg, curve, ckpts, meta, time.time() - start,
                             str(out_dir) if out_dir is not None else None, change,
                             state["step"] if state else None)
    if out_dir is not None:
        result.save(out_dir)
    return result


def _acc(acc: dict) -> str:
    """'0.292 [0.149, 0.492] (n=24)': accuracy with its Wilson 95 % interval."""
    low, high = acc.get("low", float("nan")), acc.get("high", float("nan"))
    return f"{acc['accuracy']:.3f} [{low:.3f}, {high:.3f}] (n={acc['n']})"
