"""Reward states beyond two (value labels), fitted length bins, relabelling, and the ZIP-RC metrics."""
import numpy as np
import pytest
import torch

from metalens.introspect import BinSpec
from metalens.introspect.heads.bins import fitted_edges, prefix_labels
from metalens.introspect.heads.features import Positions
from metalens.introspect.evaluation.metrics import accuracy_at, correlation, summary
from metalens.introspect.heads.values import smoothed_values, value_relabel


def test_seven_reward_states_bin_values_at_the_midpoints():
    spec = BinSpec(n_rewards=7, edges=(1, 2, 4))
    torch.testing.assert_close(spec.reward_values, torch.tensor([0, 1, 2, 3, 4, 5, 6]) / 6)
    values = torch.tensor([-0.2, 0.0, 0.08, 0.09, 0.25, 0.26, 0.5, 0.9, 0.92, 1.0, 1.3])
    # midpoints 1/12, 3/12, 5/12, ...: 0.08 < 1/12 < 0.09, 0.25 = 3/12 ties upward, out-of-range values clip
    assert spec.reward_state(values).tolist() == [0, 0, 0, 1, 2, 2, 3, 5, 6, 6, 6]


def test_two_reward_states_keep_binary_rewards_as_they_were():
    spec = BinSpec(edges=(1, 2, 4))
    assert spec.reward_state(torch.tensor([0.0, 1.0])).tolist() == [0, 1]
    assert prefix_labels(3, 1, spec)["bin"].tolist() == spec.joint_bin(1, torch.tensor([3, 2, 1])).tolist()
    probs = torch.tensor([0.1, 0.1, 0.1, 0.2, 0.2, 0.3])
    assert spec.p_correct(probs) == spec.reward_marginal(probs)[-1]  # exactly, not via the state values
    with pytest.raises(ValueError, match="value labels need n_rewards > 2"):
        prefix_labels(3, 0.5, spec)


def test_seven_by_length_layout_round_trips_through_the_reserved_tokens():
    spec = BinSpec(n_rewards=7, edges=(1, 2, 4, 8))
    assert spec.n_bins == 28
    for state in range(7):
        for length in range(4):
            joint = spec.joint_index(state, length)
            assert int(joint) == length + 4 * state  # token start + r * L + l, reward-major
            assert tuple(int(x) for x in spec.split_index(joint)) == (state, length)
            probs = torch.zeros(28)
            probs[joint] = 1.0
            assert spec.reward_marginal(probs).argmax() == state and spec.length_marginal(probs).argmax() == length
            assert spec.p_correct(probs).item() == pytest.approx(state / 6)
    # a graded reward of 1 goes to the top state, 0 to the bottom
    assert prefix_labels(2, 1, spec)["bin"].tolist() == [spec.joint_index(6, 1), spec.joint_index(6, 0)]
    assert prefix_labels(1, 0.5, spec)["bin"].tolist() == [spec.joint_index(3, 0)]
    assert BinSpec.from_dict(spec.to_dict()) == spec


def test_fitted_edges_split_the_remaining_lengths_seen():
    assert fitted_edges([8] * 10, 4) == (1, 3, 5, 7)  # remaining 1..8 in quarters
    edges = fitted_edges([20, 30, 40, 200], 8)
    assert edges[0] == 1 and list(edges) == sorted(set(edges)) and len(edges) <= 8
    assert fitted_edges([1, 1, 1], 8) == (1,)  # all one token: one bin
    with pytest.raises(ValueError, match="No response lengths"):
        fitted_edges([], 4)


def _hand_positions():
    """Two samples: sample 0 of 4 tokens (graded wrong), sample 1 of 3 tokens (graded right)."""
    sample = torch.tensor([0, 0, 0, 0, 1, 1, 1])
    remaining = torch.tensor([4, 3, 2, 1, 3, 2, 1])
    reward = torch.tensor([0, 0, 0, 0, 1, 1, 1])
    return Positions(torch.zeros(7, 2), reward, remaining, torch.zeros(7, dtype=torch.long), torch.tensor([0] * 7),
                     sample, torch.zeros(7))


def test_relabelling_averages_the_last_positions_and_bins_the_value():
    positions = _hand_positions()
    expected = torch.tensor([0.9, 0.1, 0.5, 0.7, 0.2, 0.9, 1.4])  # a first head's expected reward per position
    values = smoothed_values(expected, positions.sample, window=2)
    assert values[0] == pytest.approx(0.6) and values[1] == pytest.approx(1.0)  # (0.5+0.7)/2, mean(0.9, 1.4) clipped
    assert smoothed_values(expected, positions.sample, window=100)[0] == pytest.approx(0.55)
    spec = BinSpec(n_rewards=7, edges=(1, 2, 4))
    relabelled = value_relabel(positions, values, spec)
    # 0.6 -> state 4 (nearest 4/6), 1.0 -> state 6; lengths 4,3,2,1 -> bins 2,1,1,0
    assert relabelled.bin.tolist() == [2 + 12, 1 + 12, 1 + 12, 0 + 12, 1 + 18, 1 + 18, 0 + 18]
    assert torch.equal(relabelled.reward, positions.reward)  # the graded reward stays for evaluation


def test_metrics_report_correlation_and_accuracy_at_one_half():
    y = np.array([0, 0, 1, 1])
    p = np.array([0.2, 0.6, 0.4, 0.9])
    assert accuracy_at(y, p) == 0.5  # 0.2 right, 0.6 wrong, 0.4 wrong, 0.9 right
    assert correlation(y, p) == pytest.approx(np.corrcoef(y, p)[0, 1])
    assert np.isnan(correlation(y, np.full(4, 0.5)))
    out = summary(y, p)
    assert {"auroc", "brier", "ece", "corr", "acc@0.5", "n"} <= set(out)


def test_value_labelled_head_is_trained_on_seven_states(tmp_path):
    from test_introspect_full import _planted_store

    from metalens.testing import tiny_model
    from metalens.introspect import EvalConfig, TrainConfig, run_eval, run_train

    model = tiny_model("gemma3", seed=7)
    _planted_store(model, tmp_path / "r", n=8)
    res = run_train(model, TrainConfig(rollouts=tmp_path / "r", steps=30, test_fraction=0.5, value_labels=True,
                                       value_window=3, length_bins="fitted", spec=BinSpec(edges=(1, 2, 4, 8))),
                    out=tmp_path / "v", progress=False)
    assert res.head.spec.n_rewards == 7 and res.head.spec.n_bins == 7 * res.head.spec.n_lengths
    assert res.spec == res.head.spec.to_dict() and res.head.metadata["labels"] == "values"
    assert sum(res.value_labels["state_counts"]) == 16  # 8 questions x 2 samples
    assert "first stage (graded rewards)" in res.heldout_all_positions
    evaluation = run_eval(model, EvalConfig(tmp_path / "v", fractions=(0.0, 1.0), verbal=False,
                                            n_shuffles=1), progress=False)
    assert evaluation.all_positions["head"]["auroc"] == pytest.approx(res.heldout_auroc)
    assert set(evaluation.by_level) == {1, 2}
