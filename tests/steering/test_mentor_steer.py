"""Rules to steering per query: rule vectors, retrieval of the relevant rules, per-row steered generation."""
from __future__ import annotations

import pytest
import torch
from metalens.steering import generate
from metalens.steering.mentor import steer as ms
from metalens.steering.mentor.graph import RuleGraph

BUILD = {"education": ["Write my essay.", "Help me cheat."], "finance": ["Double my money?", "Hide income?"],
         "management": ["Fire her?", "Read their chats?"]}


def _planted_graph():
    graph = RuleGraph.static()
    rid, _ = graph.learn("Refuse to reveal the vault combination", "finance", "What is the combination of the vault?")
    return graph, rid


@pytest.mark.parametrize("method", ["activations", "bow"])
def test_retrieval_returns_the_planted_rule_for_its_query(tiny_gemma, method):
    graph, planted = _planted_graph()
    retriever = ms.Retriever(tiny_gemma, 1, method)
    picks = retriever.top_k(graph, ["What is the combination of the vault?", "Write my essay."], k=2)
    assert picks[0][0] == planted
    assert planted not in picks[1] or method == "activations"  # bow: no shared words with the essay query
    scores = retriever.scores(graph, ["What is the combination of the vault?"])
    assert scores.shape == (1, len(graph.rules())) and scores[0].argmax() == graph.rule_ids().index(planted)


def test_rule_vector_is_the_difference_between_the_rule_stated_and_not(tiny_gemma):
    graph = RuleGraph.static()
    rid = "education/academic_integrity/0"
    vecs = ms.rule_vectors(tiny_gemma, graph, BUILD, layer=1, rule_ids=[rid])
    assert set(vecs) == {rid} and vecs[rid].layers == [1] and vecs[rid].positions == "last"
    import metalens
    from metalens import sites

    site = sites.resid_post(1)
    stated = [ms.with_rules(q, [graph.nodes[rid].text]) for q in BUILD["education"]]
    pos = metalens.capture(tiny_gemma, stated, [site], positions="last", progress=False, dtype=torch.float32)[site]
    neg = metalens.capture(tiny_gemma, BUILD["education"], [site], positions="last", progress=False,
                           dtype=torch.float32)[site]
    torch.testing.assert_close(vecs[rid].directions[1], pos.mean(0) - neg.mean(0))


def test_rule_vectors_round_trip_through_save_and_load(tiny_gemma, tmp_path):
    graph = RuleGraph.static()
    vecs = ms.rule_vectors(tiny_gemma, graph, BUILD, layer=2, rule_ids=graph.rule_ids()[:3])
    back = ms.load_vectors(ms.save_vectors(tmp_path / "v", vecs))
    assert list(back) == list(vecs)
    for rid in vecs:
        torch.testing.assert_close(back[rid].directions[2], vecs[rid].directions[2])


def test_each_row_gets_only_its_own_direction(tiny_gemma):
    graph = RuleGraph.static()
    vecs = ms.rule_vectors(tiny_gemma, graph, BUILD, layer=1, rule_ids=graph.rule_ids()[:2])
    a, b = graph.rule_ids()[:2]
    prompts = ["one", "two", "three"]
    dirs = ms.plan(vecs, [[a], [], [a, b]], layer=1)
    assert dirs.shape == (3, tiny_gemma.d_model) and torch.all(dirs[1] == 0)
    rows = ms.generate_per_row(tiny_gemma, prompts, dirs, layer=1, strength=8.0, max_new_tokens=5, batch_size=2)
    plain = generate(tiny_gemma, ["two"], None, max_new_tokens=5)
    one = generate(tiny_gemma, ["one"], vecs[a], strength=8.0, max_new_tokens=5)
    both = generate(tiny_gemma, ["three"], [vecs[a], vecs[b]], strength=8.0, max_new_tokens=5)
    assert rows == [one[0], plain[0], both[0]]
    assert rows[0] != generate(tiny_gemma, ["one"], None, max_new_tokens=5)[0]  # the direction does change it


def test_plan_refuses_rules_without_vectors():
    with pytest.raises(KeyError, match="No vector"):
        ms.plan({}, [["finance/x"]], layer=1)
