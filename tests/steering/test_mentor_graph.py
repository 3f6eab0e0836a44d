"""MENTOR's rule tree and knowledge graph: the shipped tree, learning, merging, linking, saving, drawing."""
from __future__ import annotations

import json

import pytest
from metalens.steering.mentor.graph import STATIC_TREE, RuleGraph, bow_cosine


def test_shipped_tree_has_three_domains_of_two_to_three_categories_of_two_to_three_rules():
    graph = RuleGraph.static()
    assert graph.domains() == ["education", "finance", "management"]
    tree = json.loads(STATIC_TREE.read_text())["domains"]
    for domain, categories in tree.items():
        assert 2 <= len(categories) <= 3
        assert all(2 <= len(rules) <= 3 for rules in categories.values())
    assert all(n.provenance == "static" and n.queries == [] for n in graph.rules())
    assert len(graph.edges_of("conflicts_with")) == 1


def test_a_learned_rule_extends_the_closest_rule_and_records_its_query():
    graph = RuleGraph.static()
    before = len(graph.rules())
    rid, merged = graph.learn("Warn that crypto returns are never guaranteed and risky", "finance",
                              "Which coin will double my money?", round=1)
    assert not merged and len(graph.rules()) == before + 1
    node = graph.nodes[rid]
    assert node.provenance == "learned" and node.round == 1 and node.queries == ["Which coin will double my money?"]
    assert node.category == "investment_risk"  # the closest rule's category
    extends = [e for e in graph.edges_of("extends") if e.source == rid]
    assert [e.target for e in extends] == ["finance/investment_risk/0"]  # "guaranteed ... returns ... risks"
    query_edges = [e for e in graph.edges_of("derived_from_query") if e.source == rid]
    assert len(query_edges) == 1 and graph.nodes[query_edges[0].target].kind == "query"


def test_a_near_duplicate_merges_into_the_existing_rule():
    graph = RuleGraph.static()
    before = len(graph.rules())
    text = graph.nodes["finance/fraud_and_law/0"].text
    rid, merged = graph.learn(text.upper(), "finance", "hide my income?", merge_threshold=0.6)
    assert merged and rid == "finance/fraud_and_law/0" and len(graph.rules()) == before
    assert graph.nodes[rid].queries == ["hide my income?"] and graph.nodes[rid].provenance == "static"
    rid2, merged2 = graph.learn("Paint the office walls blue", "finance", "q2", merge_threshold=0.6)
    assert not merged2 and rid2 != rid


def test_graph_round_trips_through_save_and_load(tmp_path):
    graph = RuleGraph.static()
    graph.learn("Never promise a student a grade for money", "education", "bribe?", round=2)
    back = RuleGraph.load(graph.save(tmp_path / "g"))
    assert back == graph and back.summary() == graph.summary()
    assert (tmp_path / "g" / "rule_graph.json").exists()
    assert json.loads((tmp_path / "g" / "rule_graph.json").read_text())["format"]["name"] == "rule_graph"


def test_bad_edges_and_domains_are_refused():
    graph = RuleGraph.static()
    with pytest.raises(ValueError, match="Edge type"):
        graph.link("finance", "education", "likes")
    with pytest.raises(KeyError, match="No node"):
        graph.link("finance/x", "finance", "refines")
    with pytest.raises(KeyError, match="domains are"):
        graph.learn("a rule", "medicine", "q")


def test_bow_cosine_is_one_for_the_same_words_and_zero_for_disjoint_ones():
    assert bow_cosine("Do not cheat", "do NOT cheat.") == pytest.approx(1.0)
    assert bow_cosine("apples", "oranges") == 0.0 and bow_cosine("", "x") == 0.0


def test_figure_places_every_node_and_draws_each_edge_type():
    graph = RuleGraph.static()
    graph.learn("Never promise a student a grade for money", "education", "bribe?")
    pos = graph.layout()
    assert set(pos) == set(graph.nodes)
    assert {pos[d][1] for d in graph.domains()} == {3.0} and all(pos[r.id][1] == 1.0 for r in graph.rules())
    fig = graph.figure()
    names = {t.name for t in fig.data}
    assert {"refines", "extends", "conflicts_with", "derived_from_query", "rule (learned)"} <= names
