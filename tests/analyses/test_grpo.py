"""GRPO's parts on hand data and one step on a tiny model with a planted reward."""
import copy

import pytest
import torch

from metalens.analyses.grpo import group_advantages, grpo_loss, grpo_step, token_logprobs
from metalens.tasks.arithmetic import make_problems
from metalens.testing import tiny_model


def test_advantages_are_rewards_normalised_within_each_group():
    rewards = torch.tensor([[1.0, 0.0, 0.0, 1.0], [0.0, 0.0, 0.0, 1.0]])
    adv = group_advantages(rewards, eps=0.0)
    # group 0: mean 0.5, unbiased std sqrt(1/3); group 1: mean 0.25, unbiased std 0.5
    torch.testing.assert_close(adv[0], torch.tensor([1, -1, -1, 1]) * 0.5 / (1 / 3) ** 0.5)
    torch.testing.assert_close(adv[1], torch.tensor([-0.5, -0.5, -0.5, 1.5]))
    torch.testing.assert_close(group_advantages(rewards)[1], torch.tensor([-0.5, -0.5, -0.5, 1.5]) * 0.5 / (0.5 + 1e-4))


def test_a_group_with_equal_rewards_gets_zero_advantages():
    adv = group_advantages(torch.tensor([[1.0, 1.0, 1.0], [0.0, 0.0, 0.0], [0.0, 1.0, 0.0]]))
    assert torch.equal(adv[:2], torch.zeros(2, 3)) and adv[2].abs().sum() > 0


def test_advantages_refuse_a_group_of_one():
    with pytest.raises(ValueError, match="k >= 2"):
        group_advantages(torch.ones(3, 1))


def test_k3_kl_is_zero_at_the_reference_and_positive_away_from_it():
    logp = torch.log(torch.tensor([0.5, 0.25, 0.5]))
    seq, adv = torch.tensor([0, 0, 1]), torch.zeros(2)
    loss, parts = grpo_loss(logp.clone().requires_grad_(), logp, seq, adv, kl_coef=1.0)
    assert loss.item() == pytest.approx(0) and parts["kl"] == pytest.approx(0)
    loss, parts = grpo_loss(logp.clone().requires_grad_(), logp - 0.3, seq, adv, kl_coef=1.0)
    d = -0.3  # k3 = exp(d) - d - 1 with d = log pi_ref - log pi
    assert parts["kl"] == pytest.approx(torch.tensor(d).exp().item() - d - 1) and loss.item() > 0


def test_policy_term_weighs_every_completion_equally_whatever_its_length():
    logp = torch.zeros(4, requires_grad=True)
    seq, adv = torch.tensor([0, 0, 0, 1]), torch.tensor([1.0, -1.0])
    loss, _ = grpo_loss(logp, logp.detach(), seq, adv, kl_coef=0.0)
    loss.backward()
    # d loss / d logp: -A / (len * n_completions): completion 0 has 3 tokens, completion 1 one
    torch.testing.assert_close(logp.grad, torch.tensor([-1 / 6, -1 / 6, -1 / 6, 0.5]))


def test_one_grpo_step_moves_log_probs_towards_the_rewarded_samples():
    model = tiny_model("gemma3", seed=5)
    model.hf.requires_grad_(True)
    before = copy.deepcopy(model)
    opt = torch.optim.SGD([p for p in model.hf.parameters() if p.requires_grad], lr=0.05)
    planted = lambda problem, text: float(len(text) > 0 and ord(text[0]) % 2 == 0)
    stats = grpo_step(model, make_problems(3, seed=2), opt, group_size=8, kl_coef=0.0, max_new_tokens=4,
                      seed=11, reward=planted)
    assert stats["informative"] > 0, "the planted reward should split at least one group"
    changed = [not torch.equal(a, b) for a, b in zip(model.hf.parameters(), before.hf.parameters())]
    assert any(changed)
    with torch.no_grad():
        old, seq = token_logprobs(before, *stats["sequences"])
        new, _ = token_logprobs(model, *stats["sequences"])
    n = stats["rewards"].numel()
    delta = torch.zeros(n).index_add(0, seq, new - old)  # change of each completion's log-probability
    adv = stats["advantages"].flatten()
    assert delta[adv > 0].mean() > delta[adv < 0].mean()
    # the GRPO surrogate with the new policy (ratio = pi_new / pi_old) is lower than at the update (ratio 1)
    ratio = (new - old).exp()
    surrogate_new = -(torch.zeros(n).index_add(0, seq, ratio * adv[seq]) /
                      torch.zeros(n).index_add(0, seq, torch.ones_like(ratio))).mean()
    assert surrogate_new < stats["loss"]


def test_grpo_step_is_reproducible_from_its_seed():
    runs = []
    for _ in range(2):
        model = tiny_model("gemma3", seed=5)
        model.hf.requires_grad_(True)
        opt = torch.optim.SGD(model.hf.parameters(), lr=0.05)
        stats = grpo_step(model, make_problems(2, seed=2), opt, group_size=4, max_new_tokens=4, seed=3,
                          reward=lambda p, t: float("1" in t))
        runs.append((stats["completions"], model.hf.model.layers[0].self_attn.q_proj.weight.detach().clone()))
    assert runs[0][0] == runs[1][0] and torch.equal(runs[0][1], runs[1][1])
