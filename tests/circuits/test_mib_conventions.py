"""MIB's conventions for faithfulness curves: q/k/v inputs of a head counted as 3 edges, int(pct * n) edges
kept, CPR from the signed ranking and CMD from the |score| ranking; intervals over evaluation pairs."""
import numpy as np
import pytest
import torch

from metalens.circuits.curve_stats import curve_intervals
from metalens.circuits.edges import EdgeScores, node_depth, node_names
from metalens.circuits.faithfulness import curve_areas, faithfulness_curve, faithfulness_curves, find_edge_circuit
from metalens.circuits.metrics import last_logits, metric_per_pair, prepare, task_forward
from metalens.circuits.patching import patch_heads
from metalens.circuits.tasks import induction_task
from metalens.sites import attn_k, attn_v, attn_z
from metalens.circuits.topk import edge_costs, mib_budget, mib_edge_count, ranked_edges, top_edges


def random_scores(model, seed=0) -> EdgeScores:
    ups, downs = node_names(model.n_layers, model.n_heads)
    g = torch.Generator().manual_seed(seed)
    scores = torch.randn(len(ups), len(downs), generator=g)
    valid = torch.tensor([[node_depth(u) < node_depth(v) for v in downs] for u in ups])
    scores[~valid] = float("nan")
    return EdgeScores(ups, downs, scores)


def mib_count(L, H) -> int:
    """MIB's graph: each head has q, k, v inputs from every earlier node; an MLP one input; the logits one."""
    into_heads = sum(3 * H * (1 + l * (H + 1)) for l in range(L))
    into_mlps = sum(1 + l * (H + 1) + H for l in range(L))
    return into_heads + into_mlps + 1 + L * (H + 1)


def test_mib_counts_the_q_k_and_v_inputs_of_a_head_as_three_edges(tiny_llama):
    scores = random_scores(tiny_llama)
    L, H = tiny_llama.n_layers, tiny_llama.n_heads
    assert mib_edge_count(scores) == mib_count(L, H) == 262  # 3 layers x 4 heads
    assert int((~scores.scores.isnan()).sum()) == 118  # metalens' graph: one edge per head input


def test_the_curve_reports_mibs_count_and_budget(tiny_llama):
    task = induction_task(tiny_llama.tokenizer, n=3)
    curve = faithfulness_curve(tiny_llama, task, random_scores(tiny_llama), ks=(1, 10, 100))
    n = mib_count(tiny_llama.n_layers, tiny_llama.n_heads)
    assert curve["total_edges_mib"] == n and curve["total_edges"] == 118
    assert curve["budget_mib"] == [int(0.01 * n), int(0.1 * n), n] == [2, 26, 262]  # round(2.62) would be 3
    for key in ("n_edges_mib_signed", "n_edges_mib_abs"):
        assert curve[key] == curve["budget_mib"]  # exactly int(pct * n) MIB edges, a head's inputs split if need be
    assert curve["faithfulness_abs"][-1] == pytest.approx(1.0, abs=1e-4)


def test_the_mib_budget_truncates_like_int():
    assert mib_budget(0.1, 1999) == 1  # 1.999 edges: int keeps 1, round would keep 2
    assert mib_budget(50, 3) == 1 and mib_budget(100, 3) == 3
    assert mib_budget(0.1, 1000) == 1  # MIB writes the grid as 0.001, not 0.1 / 100


def test_a_head_edge_costs_three_and_the_prefix_stops_at_the_budget():
    costs = edge_costs(["attn.L1.H0", "mlp.L0", "logits"])
    assert costs == [3, 1, 1]
    ranked = [(0, 1), (0, 0), (1, 2), (2, 2)]  # mlp (1), head (3), logits (1), logits (1): 6 MIB edges
    whole = (0, 1, 2)
    assert top_edges(ranked, costs, 50, "mib") == ([(0, 1, whole), (0, 0, (0, 1))], 3)  # budget 3: the head's q, k
    assert top_edges(ranked, costs, 70, "mib") == ([(0, 1, whole), (0, 0, whole)], 4)  # budget int(4.2) = 4
    assert top_edges(ranked, costs, 50, "metalens") == ([(0, 1, whole), (0, 0, whole)], 4)  # round(0.5 * 4) edges


def test_signed_ranking_puts_the_edges_that_carry_the_behaviour_first():
    ups, downs = ["embed", "mlp.L0"], ["mlp.L0", "logits"]
    scores = EdgeScores(ups, downs, torch.tensor([[-2.0, 5.0], [float("nan"), -1.0]]))
    assert ranked_edges(scores, "abs") == [(0, 1), (0, 0), (1, 1)]
    # logit_diff falls when an important edge is patched: the most negative score first
    assert ranked_edges(scores, "signed", sign=-1) == [(0, 0), (1, 1), (0, 1)]
    assert ranked_edges(scores, "signed", sign=1) == [(0, 1), (1, 1), (0, 0)]  # kl rises instead
    with pytest.raises(ValueError, match="ranking"):
        ranked_edges(scores, "random")


def test_signed_and_absolute_curves_run_different_circuits_when_scores_have_mixed_signs(tiny_llama):
    task = induction_task(tiny_llama.tokenizer, n=3)
    scores = random_scores(tiny_llama, seed=1)  # mixed signs
    curve = faithfulness_curve(tiny_llama, task, scores, ks=(10, 100))
    costs = edge_costs(scores.downstream)
    kept = {}
    for ranking in ("signed", "abs"):
        edges, _ = top_edges(ranked_edges(scores, ranking, sign=-1), costs, 10, "mib")
        kept[ranking] = {(scores.upstream[i], scores.downstream[j] if len(inputs) == 3 else f"{scores.downstream[j]}<{x}>")
                         for i, j, inputs in edges for x in ("qkv"[s] for s in inputs)}
        expected = float(find_edge_circuit(tiny_llama, task, kept[ranking]).mean())
        assert curve[f"circuit_{ranking}"][0] == pytest.approx(expected, abs=1e-6)
    assert kept["signed"] != kept["abs"]
    assert curve["cpr_signed"] == pytest.approx(curve_areas(curve["k"], curve["faithfulness_signed"])[0])
    assert curve["cmd_abs"] == pytest.approx(curve_areas(curve["k"], curve["faithfulness_abs"])[1])
    assert {"cpr", "cmd", "faithfulness", "n_edges"} <= set(curve)  # the earlier convention's keys stay


def test_intervals_are_over_evaluation_pairs_and_paired_against_eap_ig(tiny_llama):
    task = induction_task(tiny_llama.tokenizer, n=10)  # metalens.stats.MIN_BOOTSTRAP_UNITS pairs: bounds computed
    curves = faithfulness_curves(tiny_llama, task, {"ig": random_scores(tiny_llama, 1),
                                                    "attribution": random_scores(tiny_llama, 2)}, ks=(10, 50, 100))
    out = curve_intervals(curves, n_boot=50)
    for method, curve in curves.items():
        # per-pair metrics are float32 and the curve's means too; the resampled ones are float64
        assert out[method]["cpr_interval"]["estimate"] == pytest.approx(curve["cpr_signed"], rel=1e-5)
        assert out[method]["cmd_interval"]["estimate"] == pytest.approx(curve["cmd_abs"], rel=1e-5)
        assert out[method]["cpr_interval"]["n"] == 10
    diff = out["attribution"]["cpr_diff_vs_eap_ig"]
    assert diff["estimate"] == pytest.approx(curves["attribution"]["cpr_signed"] - curves["ig"]["cpr_signed"], abs=1e-5)
    assert diff["n_comparisons"] == 2 and "cpr_diff_vs_eap_ig" not in out["ig"]
    same = curve_intervals({"ig": curves["ig"], "copy": curves["ig"]}, n_boot=50)["copy"]["cpr_diff_vs_eap_ig"]
    assert (same["low"], same["high"]) == (0.0, 0.0)  # the same draw for both methods: a paired difference
    assert np.isfinite([diff["low"], diff["high"]]).all()


def test_the_plot_draws_mibs_curves_with_their_areas():
    from metalens.circuits.plots import faithfulness_plot

    curve = {"k": [1, 100], "faithfulness": [0.2, 1.0], "cpr": 0.6, "cmd": 0.4,
             "faithfulness_signed": [0.3, 1.0], "cpr_signed": 0.65, "faithfulness_abs": [0.1, 1.0], "cmd_abs": 0.45}
    signed = faithfulness_plot({"ig": curve}, convention="signed")
    assert list(signed.data[0].y) == [0.3, 1.0] and "MIB CPR 0.650" in signed.data[0].name
    assert "MIB CMD 0.450" in faithfulness_plot({"ig": curve}, convention="abs").data[0].name
    with pytest.raises(ValueError, match="convention"):
        faithfulness_plot({"ig": curve}, convention="log")


@pytest.mark.parametrize("arch", ["tiny_gemma", "tiny_llama"])  # 1 and 2 key/value heads for 4 query heads
@pytest.mark.parametrize("cut", ["k", "v"])
def test_cutting_one_input_of_a_head_patches_only_that_input(arch, cut, request):
    model = request.getfixturevalue(arch)
    task = induction_task(model.tokenizer, n=4)
    batch = prepare(model, task)
    site = {"k": attn_k, "v": attn_v}[cut](1)
    _, corr = task_forward(model, batch, batch.corrupted_ids, keep=[site])
    group = 2 // (model.n_heads // model.n_kv_heads)  # the key/value head that head 2 reads

    def corrupted_input(t):
        t = t.clone()
        t[:, :, group] = corr[site][:, :, group].to(t.dtype)
        return t

    with torch.no_grad():  # head 2's z with this one input from the corrupted run, put back into the clean run
        _, mixed = task_forward(model, batch, edits={site: corrupted_input}, keep=[attn_z(1)])
        expected = metric_per_pair(batch, patch_heads(model, batch, {1: mixed[attn_z(1)]}, {1: [2]}),
                                   last_logits(model, batch)).cpu()
    ups, downs = node_names(model.n_layers, model.n_heads)
    edges = {(u, v) for u in ups for v in downs if node_depth(u) < node_depth(v) and v != "attn.L1.H2"}
    edges |= {(u, f"attn.L1.H2<{x}>") for u in ups if node_depth(u) < 1 for x in "qkv" if x != cut}
    got = find_edge_circuit(model, task, edges)
    clean = metric_per_pair(batch, last_logits(model, batch), last_logits(model, batch)).cpu()
    assert (got - clean).abs().max() > 1e-4
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-5)
