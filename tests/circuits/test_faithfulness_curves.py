"""Edge circuits that are run (per-head inputs), and MIB faithfulness curves over them."""
import pytest
import torch

from metalens.circuits.edges import EdgeScores, node_depth, node_names
from metalens.circuits.faithfulness import (
    head_outputs, curve_areas, edge_scores_from_nodes, exact_node_scores, faithfulness_curve,
    faithfulness_curves, find_edge_circuit,
)
from metalens.circuits.metrics import embeddings, last_logits, metric_per_pair, prepare, task_forward
from metalens.circuits.patching import patch_heads, z_run
from metalens.circuits.tasks import ContrastTask, induction_task
from metalens.sites import attn_out, attn_z, mlp_out, resid_post

ARCHS = ["tiny_gemma", "tiny_llama"]


def all_edges(model):
    ups, downs = node_names(model.n_layers, model.n_heads)
    return {(u, v) for u in ups for v in downs if node_depth(u) < node_depth(v)}


def per_pair(model, task, logits):
    batch = prepare(model, task)
    return metric_per_pair(batch, logits, last_logits(model, batch)).cpu()


def close(a, b):
    torch.testing.assert_close(a, b, rtol=0, atol=1e-5)


@pytest.fixture(params=ARCHS)
def model(request):
    return request.getfixturevalue(request.param)


@pytest.fixture
def task(model):
    return induction_task(model.tokenizer, n=4)


def test_keeping_every_edge_gives_the_clean_metric(model, task):
    batch = prepare(model, task)
    close(find_edge_circuit(model, task, all_edges(model)), per_pair(model, task, last_logits(model, batch)))


def test_keeping_no_edge_gives_the_corrupted_metric(model, task):
    batch = prepare(model, task)
    corrupted = per_pair(model, task, last_logits(model, batch, batch.corrupted_ids))
    assert (corrupted - per_pair(model, task, last_logits(model, batch))).abs().max() > 1e-3  # not trivial
    close(find_edge_circuit(model, task, set()), corrupted)


def test_cutting_embed_to_logits_adds_the_embedding_difference_before_the_final_norm(model):
    # the last token differs, so the edge carries something at the position the metric reads
    clean = ["abcdeab", "qwertyq", "zxcvbnz", "poiuytp"]
    task = ContrastTask("last", clean, [c[:-1] + "k" for c in clean], ["c", "w", "x", "o"], ["l", "m", "n", "j"])
    batch = prepare(model, task)
    delta = embeddings(model, batch.corrupted_ids) - embeddings(model, batch.clean_ids)
    expected = per_pair(model, task, last_logits(model, batch, edits={resid_post(model.n_layers - 1): lambda x: x + delta}))
    got = find_edge_circuit(model, task, all_edges(model) - {("embed", "logits")})
    assert (got - per_pair(model, task, last_logits(model, batch))).abs().max() > 1e-4
    close(got, expected)


def test_cutting_every_edge_into_a_head_equals_patching_its_z(model, task):
    # its query, key and value all read the corrupted residual, while the other heads of the layer read the clean one
    batch = prepare(model, task)
    _, corr_z = z_run(model, batch, batch.corrupted_ids)
    expected = per_pair(model, task, patch_heads(model, batch, corr_z, {1: [2]}))
    got = find_edge_circuit(model, task, {e for e in all_edges(model) if e[1] != "attn.L1.H2"})
    assert (got - per_pair(model, task, last_logits(model, batch))).abs().max() > 1e-4
    close(got, expected)


def test_cutting_every_edge_out_of_an_mlp_equals_patching_its_output(model, task):
    batch = prepare(model, task)
    _, corr = task_forward(model, batch, batch.corrupted_ids, keep=[mlp_out(0)])
    expected = per_pair(model, task, last_logits(model, batch, edits={mlp_out(0): lambda x: corr[mlp_out(0)]}))
    close(find_edge_circuit(model, task, {e for e in all_edges(model) if e[0] != "mlp.L0"}), expected)


def test_cutting_every_edge_out_of_a_head_equals_patching_its_z_without_a_post_attention_norm(tiny_llama):
    task = induction_task(tiny_llama.tokenizer, n=4)
    batch = prepare(tiny_llama, task)
    _, corr_z = z_run(tiny_llama, batch, batch.corrupted_ids)
    expected = per_pair(tiny_llama, task, patch_heads(tiny_llama, batch, corr_z, {0: [1]}))
    close(find_edge_circuit(tiny_llama, task, {e for e in all_edges(tiny_llama) if e[0] != "attn.L0.H1"}), expected)


def test_head_outputs_add_up_to_the_attention_output(model, task):
    batch = prepare(model, task)
    _, cache = task_forward(model, batch, keep=[attn_z(1), attn_out(1)])
    with torch.no_grad():
        close(head_outputs(model, 1, cache[attn_z(1)]).sum(0), cache[attn_out(1)])


def test_cpr_and_cmd_are_trapezoid_areas_against_the_fraction_of_edges():
    cpr, cmd = curve_areas([100, 0, 50], [1.0, 0.0, 1.0])  # unsorted on purpose
    assert cpr == pytest.approx(0.5 * 0.5 + 0.5 * 1.0)
    assert cmd == pytest.approx(0.5 * 0.5 + 0.0)
    cpr, cmd = curve_areas([10, 20], [1.5, 0.5])  # overshoot counts in CMD
    assert cpr == pytest.approx(0.1 * 1.0) and cmd == pytest.approx(0.1 * 0.5)


def test_the_curve_runs_the_top_scored_edges(tiny_llama):
    task = induction_task(tiny_llama.tokenizer, n=4)
    ups, downs = node_names(tiny_llama.n_layers, tiny_llama.n_heads)
    edges = sorted(all_edges(tiny_llama))
    scores = torch.full((len(ups), len(downs)), float("nan"))
    values = torch.randn(len(edges))
    for (u, v), s in zip(edges, values):
        scores[ups.index(u), downs.index(v)] = s
    curve = faithfulness_curve(tiny_llama, task, EdgeScores(ups, downs, scores), ks=(100, 20))
    assert curve["k"] == [20, 100] and curve["total_edges"] == len(edges)
    n = round(0.2 * len(edges))
    top = [edges[i] for i in values.abs().argsort(descending=True)[:n].tolist()]
    assert curve["n_edges"] == [n, len(edges)]
    assert curve["circuit"][0] == pytest.approx(float(find_edge_circuit(tiny_llama, task, top).mean()), abs=1e-6)
    assert curve["faithfulness"][1] == pytest.approx(1.0, abs=1e-4)
    expected_f = (curve["circuit"][0] - curve["corrupted"]) / (curve["clean"] - curve["corrupted"])
    assert curve["faithfulness"][0] == pytest.approx(expected_f)
    assert (curve["cpr"], curve["cmd"]) == pytest.approx(curve_areas(curve["k"], curve["faithfulness"]))


def test_faithfulness_curves_gives_one_curve_per_method(tiny_gemma):
    task = induction_task(tiny_gemma.tokenizer, n=3)
    nodes = {u: float(i) for i, u in enumerate(node_names(tiny_gemma.n_layers, tiny_gemma.n_heads)[0])}
    scores = edge_scores_from_nodes(nodes, tiny_gemma.n_layers, tiny_gemma.n_heads)
    curves = faithfulness_curves(tiny_gemma, task, {"a": scores, "b": scores}, ks=(50, 100))
    assert set(curves) == {"a", "b"} and curves["a"]["faithfulness"] == curves["b"]["faithfulness"]
    assert {"k", "faithfulness", "cpr", "cmd"} <= set(curves["a"])


def test_node_scores_become_the_scores_of_every_edge_out_of_the_node():
    ups, downs = node_names(2, 2)
    scores = edge_scores_from_nodes({u: float(i) for i, u in enumerate(ups)}, 2, 2)
    row = scores.scores[ups.index("attn.L0.H1")]
    assert set(row[~row.isnan()].tolist()) == {float(ups.index("attn.L0.H1"))}
    assert row.isnan()[downs.index("attn.L0.H0")] and not row.isnan()[downs.index("logits")]
    with pytest.raises(ValueError, match="mlp.L1"):
        edge_scores_from_nodes({u: 0.0 for u in ups if u != "mlp.L1"}, 2, 2)


def test_an_mlps_exact_node_score_is_cutting_its_outgoing_edges(tiny_gemma):
    task = induction_task(tiny_gemma.tokenizer, n=3)
    heads = torch.zeros(tiny_gemma.n_layers, tiny_gemma.n_heads)  # not under test
    scores = exact_node_scores(tiny_gemma, task, heads)
    clean = float(find_edge_circuit(tiny_gemma, task, all_edges(tiny_gemma)).mean())
    cut = float(find_edge_circuit(tiny_gemma, task, {e for e in all_edges(tiny_gemma) if e[0] != "mlp.L1"}).mean())
    assert scores["mlp.L1"] == pytest.approx(cut - clean, abs=1e-5)


def test_an_unknown_or_backward_edge_is_refused(tiny_gemma):
    task = induction_task(tiny_gemma.tokenizer, n=2)
    with pytest.raises(ValueError, match="attn.L2.H0.*attn.L1.H0"):
        find_edge_circuit(tiny_gemma, task, {("attn.L2.H0", "attn.L1.H0")})
    with pytest.raises(ValueError, match="No edge 'attn.L9.H0'"):
        find_edge_circuit(tiny_gemma, task, {("attn.L9.H0", "logits")})


def test_hooks_are_removed_when_the_circuit_run_fails(tiny_gemma, monkeypatch):
    def hooked():
        return [m for m in tiny_gemma.hf.modules() if m._forward_hooks or m._forward_pre_hooks]

    assert hooked() == []

    def boom(*args, **kwargs):
        raise RuntimeError("boom")

    task = induction_task(tiny_gemma.tokenizer, n=2)
    edges = all_edges(tiny_gemma)
    from metalens.circuits import faithfulness as module

    real = module._circuit_logits

    def failing(model, ref, keep):  # the clean/corrupted runs succeed, the circuit pass fails mid-way
        monkeypatch.setattr(tiny_gemma.layers[1].mlp, "forward", boom)
        return real(model, ref, keep)

    monkeypatch.setattr(module, "_circuit_logits", failing)
    with pytest.raises(RuntimeError, match="boom"):
        find_edge_circuit(tiny_gemma, task, edges)
    assert hooked() == []


def test_faithfulness_plot_draws_one_line_per_method():
    from metalens.circuits.plots import faithfulness_plot

    curves = {m: {"k": [1, 10, 100], "faithfulness": [0.1, 0.5, 1.0], "cpr": 0.6, "cmd": 0.4} for m in ("ig", "exact")}
    fig = faithfulness_plot(curves)
    assert [t.name.split(" ")[0] for t in fig.data] == ["ig", "exact"] and list(fig.data[0].y) == [0.1, 0.5, 1.0]
