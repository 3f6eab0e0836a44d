"""GRPO (Shao et al. 2024, DeepSeekMath, "Group Relative Policy Optimization") on plain torch.

One step: sample a group of `k` completions per problem (`metalens.generate`, seeded), score
each with a verifiable reward (default: `metalens.tasks.arithmetic.grade`, 1 correct / 0
wrong), turn rewards into group-normalised advantages (r - mean) / (std + eps), and minimise

    loss = mean over completions of  mean over its tokens of  -(ratio * A) + kl_coef * k3

where ratio = pi(token) / pi_old(token) and k3 = exp(d) - d - 1 with d = log pi_ref - log pi
(Schulman 2020's unbiased, non-negative per-token estimator of KL(pi || pi_ref), as in the
GRPO paper). With one update per batch pi_old is the current policy, so the ratio is 1 (its
gradient is grad log pi) and PPO's clip never acts; it is left out. The reference model is the
base: the LoRA adapters switched off, or a frozen copy for full fine-tuning.
"""
from __future__ import annotations

import contextlib
from collections.abc import Callable

import torch
from torch import Tensor

import metalens
from metalens.sites import FINAL_NORM
from metalens.tasks.arithmetic import Problem, grade

EPS = 1e-4  # as TRL's GRPOTrainer


def group_advantages(rewards: Tensor, eps: float = EPS) -> Tensor:
    """[n_problems, k] rewards -> (r - group mean) / (group std + eps), the std unbiased (as TRL).

    A group whose rewards are all equal carries no signal: its advantages are exactly 0.
    """
    if rewards.ndim != 2 or rewards.shape[1] < 2:
        raise ValueError(f"rewards must be [n_problems, k] with k >= 2 (a group), not {tuple(rewards.shape)}.")
    rewards = rewards.float()
    return (rewards - rewards.mean(1, keepdim=True)) / (rewards.std(1, keepdim=True) + eps)


def sequences(model, prompts: list[str], completions: list[list[int]]) -> tuple[Tensor, Tensor, Tensor]:
    """Right-padded prompt + completion ids, mask, and labels that are -100 outside the completion.

    `completions[i]` continues `prompts[i]` (tokenized with special tokens, as `generate` does).
    """
    rows, starts = [], []
    for prompt, new in zip(prompts, completions):
        ids = model.tokenizer(prompt)["input_ids"]
        rows.append(ids + list(new)), starts.append(len(ids))
    input_ids, mask = model.pad(rows)
    labels = input_ids.clone()
    labels[mask == 0] = -100
    for i, start in enumerate(starts):
        labels[i, :start] = -100
    return input_ids, mask, labels


def token_logprobs(model, input_ids: Tensor, mask: Tensor, labels: Tensor, temperature: float = 1.0,
                   grad: bool = False) -> tuple[Tensor, Tensor]:
    """(log pi(token) at every label position `[n_tokens]`, the sequence each belongs to `[n_tokens]`).

    Logits are divided by `temperature`, the distribution the completions were sampled from.
    The pass stops at the final norm and unembeds only the label positions.
    """
    cache = metalens.run_with_cache(model, input_ids, mask, sites=[FINAL_NORM], grad=grad)
    hidden = cache[FINAL_NORM]  # [batch, pos, d_model]
    targets = labels[:, 1:]
    keep = targets != -100  # [batch, pos - 1]
    with torch.set_grad_enabled(grad):
        logits = model.final_logits(hidden[:, :-1][keep]).float() / temperature  # [n_tokens, vocab]
        logp = torch.log_softmax(logits, -1).gather(-1, targets[keep][:, None])[:, 0]
    return logp, keep.nonzero()[:, 0]


def _per_sequence_mean(values: Tensor, seq: Tensor, n_seq: int) -> Tensor:
    total = torch.zeros(n_seq, dtype=values.dtype, device=values.device).index_add(0, seq, values)
    count = torch.zeros(n_seq, dtype=values.dtype, device=values.device).index_add(0, seq, torch.ones_like(values))
    return total / count.clamp(min=1)


def grpo_loss(logp: Tensor, ref_logp: Tensor, seq: Tensor, advantages: Tensor, kl_coef: float) -> tuple[Tensor, dict]:
    """The GRPO objective on sampled tokens (see the module docstring) and its parts.

    logp / ref_logp: `[n_tokens]` log-probs of the sampled tokens under the policy (with graph)
    and the reference; seq: each token's completion; advantages: `[n_completions]`.
    """
    ratio = torch.exp(logp - logp.detach())  # = 1, gradient grad log pi: one update per batch
    d = ref_logp.detach() - logp
    kl = d.exp() - d - 1  # k3 estimator of KL(pi || pi_ref), per token
    per_token = -ratio * advantages.detach()[seq] + kl_coef * kl
    per_seq = _per_sequence_mean(per_token, seq, len(advantages))  # each completion weighs the same
    return per_seq.mean(), {"kl": _per_sequence_mean(kl.detach(), seq, len(advantages)).mean().item()}


def default_reward(problem: Problem, completion: str) -> float:
    """1.0 when the arithmetic grader accepts the completion's answer, else 0.0."""
    return float(grade(problem, completion))


def grpo_step(model, problems: list[Problem], optimizer, *, group_size: int = 4, kl_coef: float = 0.04,
              temperature: float = 1.0, max_new_tokens: int = 24, seed: int = 0,
              reward: Callable[[Problem, str], float] | None = None, reference=None) -> dict:
    """One GRPO update of `model`'s trainable parameters on `problems`; returns the step's statistics.

    reward(problem, completion) -> float; None: `default_reward` (the arithmetic grader).
    reference: a `metalens.Model` (e.g. a frozen copy of the base) or a function returning a
    context manager inside which `model` itself is the reference (LoRA: the adapters disabled);
    None: the model before this step (the KL term is then 0 at the update).
    Returns {'loss', 'kl', 'reward' (mean), 'rewards' [n, k], 'advantages' [n, k], 'informative'
    (fraction of groups whose rewards differ), 'completions', 'sequences' (ids, mask, labels)}.
    """
    reward = reward or default_reward
    prompts = [p.prompt for p in problems]
    gen = metalens.generate(model, prompts, max_new_tokens=max_new_tokens, do_sample=True,
                            temperature=temperature, n=group_size, seed=seed, stop_strings=["\n"])
    rewards = torch.tensor([reward(problems[i // group_size], text) for i, text in enumerate(gen.texts)])
    rewards = rewards.view(len(problems), group_size)  # prompt-major, as generate returns them
    adv = group_advantages(rewards)  # [n, k]
    batch = sequences(model, [p for p in prompts for _ in range(group_size)], gen.ids)
    with torch.no_grad():
        if isinstance(reference, metalens.Model):
            ref_logp, _ = token_logprobs(reference, *batch, temperature)
        else:
            with reference() if reference is not None else contextlib.nullcontext():
                ref_logp, _ = token_logprobs(model, *batch, temperature)
    logp, seq = token_logprobs(model, *batch, temperature, grad=True)
    loss, parts = grpo_loss(logp, ref_logp, seq, adv.flatten().to(logp.device), kl_coef)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return {"loss": loss.item(), "kl": parts["kl"], "reward": rewards.mean().item(), "rewards": rewards,
            "advantages": adv, "informative": (rewards.std(1) > 0).float().mean().item(),
            "completions": gen.texts, "sequences": batch}
