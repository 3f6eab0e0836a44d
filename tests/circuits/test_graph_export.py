"""EAP-IG graph JSON: metalens edge scores out and back, and EAP-IG's per-input head edges in."""
import json

import pytest
import torch

from metalens.circuits.edges import EdgeScores, node_depth, node_names, extract_circuit
from metalens.circuits.graph import export_graph, from_eap_name, import_graph, to_eap_name

CFG = {"n_layers": 2, "n_heads": 2, "d_model": 8}


def _random_edges(seed: int = 0) -> EdgeScores:
    ups, downs = node_names(CFG["n_layers"], CFG["n_heads"])
    scores = torch.randn(len(ups), len(downs), generator=torch.Generator().manual_seed(seed))
    valid = torch.tensor([[node_depth(u) < node_depth(v) for v in downs] for u in ups])
    scores[~valid] = float("nan")
    return EdgeScores(ups, downs, scores)


def test_node_names_map_both_ways():
    assert [to_eap_name(n) for n in ["embed", "attn.L2.H3", "mlp.L5", "logits"]] == ["input", "a2.h3", "m5", "logits"]
    assert [from_eap_name(n) for n in ["input", "a2.h3", "m5", "logits"]] == ["embed", "attn.L2.H3", "mlp.L5", "logits"]


def test_export_writes_eap_ig_names_with_qkv_edges_into_heads(tmp_path):
    edges = _random_edges()
    graph = export_graph(edges, path=tmp_path / "graph.json", model_cfg=CFG)
    assert graph["cfg"] == {"n_layers": 2, "n_heads": 2, "parallel_attn_mlp": False, "d_model": 8}
    assert set(graph["nodes"]) == {"input", "a0.h0", "a0.h1", "m0", "a1.h0", "a1.h1", "m1", "logits"}
    names = set(graph["edges"])
    assert {"input->a0.h0<q>", "input->a0.h0<k>", "input->a0.h0<v>", "a0.h1->a1.h0<q>", "input->m0",
            "m1->logits"} <= names
    assert "input->a0.h0" not in names and "a0.h0->a0.h1<q>" not in names  # same-layer heads: no edge
    assert graph["metalens"]["qkv"] == "combined"
    assert json.loads((tmp_path / "graph.json").read_text()) == graph


def test_round_trip_keeps_scores_in_graph_edges_and_missing_edges(tmp_path):
    edges = _random_edges()
    circuit = extract_circuit(edges, k=6)
    export_graph(edges, circuit, tmp_path / "graph.json", model_cfg=CFG)
    back, in_graph = import_graph(tmp_path / "graph.json")
    assert back.upstream == edges.upstream and back.downstream == edges.downstream
    assert torch.equal(back.scores.isnan(), edges.scores.isnan())
    torch.testing.assert_close(back.scores, edges.scores, equal_nan=True, rtol=0, atol=0)
    assert in_graph == {(up, down) for up, down, _ in circuit}


def test_in_graph_nodes_are_those_on_circuit_edges_plus_logits():
    edges = _random_edges()
    graph = export_graph(edges, [("embed", "attn.L1.H0"), ("attn.L1.H0", "logits")], model_cfg=CFG)
    kept = {name for name, node in graph["nodes"].items() if node["in_graph"]}
    assert kept == {"input", "a1.h0", "logits"}
    assert graph["edges"]["input->a1.h0<k>"]["in_graph"] and not graph["edges"]["input->a1.h1<k>"]["in_graph"]


def test_eap_ig_file_with_split_qkv_scores_imports_their_sum():
    graph = {
        "cfg": {"n_layers": 2, "n_heads": 2, "parallel_attn_mlp": False, "d_model": 8},
        "nodes": {"input": {"in_graph": True}, "a1.h1": {"in_graph": True}, "logits": {"in_graph": True}},
        "edges": {
            "input->a1.h1<q>": {"score": 0.5, "in_graph": False},
            "input->a1.h1<k>": {"score": -0.25, "in_graph": True},
            "input->a1.h1<v>": {"score": 2.0, "in_graph": False},
            "a1.h1->logits": {"score": 1.5, "in_graph": True},
            "a0.h0->m1": {"score": 0.125, "in_graph": False},
        },
    }
    edges, in_graph = import_graph(graph)
    score = {(u, d): s for u, d, s in edges.top(10)}
    assert score == {("embed", "attn.L1.H1"): 2.25, ("attn.L1.H1", "logits"): 1.5, ("attn.L0.H0", "mlp.L1"): 0.125}
    assert in_graph == {("embed", "attn.L1.H1"), ("attn.L1.H1", "logits")}
    assert int((~edges.scores.isnan()).sum()) == 3  # edges the file lacks stay NaN


def test_edges_that_cannot_exist_are_refused():
    bad = {"cfg": {"n_layers": 2, "n_heads": 2, "parallel_attn_mlp": False, "d_model": 8}, "nodes": {},
           "edges": {"a1.h0->a0.h1<q>": {"score": 1.0, "in_graph": True}}}
    with pytest.raises(ValueError, match="does not exist in a graph of 2 layers x 2 heads"):
        import_graph(bad)
    bad["edges"] = {"input->a0.h1": {"score": 1.0, "in_graph": True}}
    with pytest.raises(ValueError, match="need <q>, <k> or <v>"):
        import_graph(bad)


def test_export_refuses_a_model_cfg_that_does_not_match_the_scores():
    with pytest.raises(ValueError, match="do not match a model of 3 layers"):
        export_graph(_random_edges(), model_cfg={**CFG, "n_layers": 3})
