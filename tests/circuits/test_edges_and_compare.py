"""Edge attribution, circuit extraction, faithfulness, model comparison and cohorts."""
import torch

from metalens.circuits import attribute_edges, attribute_heads, compare, extract_circuit
from metalens.circuits.compare import build_circuit
from metalens.circuits.edges import EdgeScores, faithfulness
from metalens.circuits.emergent import cohorts
from metalens.circuits.tasks import induction_task


def test_a_heads_outgoing_edges_sum_to_its_attribution_score(tiny_gemma):
    # the residual stream is a sum, so the gradient after a head is the sum of all later input gradients
    task = induction_task(tiny_gemma.tokenizer, n=4)
    edges = attribute_edges(tiny_gemma, task, steps=1)
    nodes = attribute_heads(tiny_gemma, task)
    for layer in range(3):
        for head in range(4):
            row = edges.scores[edges.upstream.index(f"attn.L{layer}.H{head}")]
            assert abs(float(row.nan_to_num(0).sum()) - float(nodes[layer, head])) < 1e-5


def test_edges_only_run_forward_in_depth(tiny_gemma):
    edges = attribute_edges(tiny_gemma, induction_task(tiny_gemma.tokenizer, n=2), steps=1)
    i, j = edges.upstream.index("attn.L2.H0"), edges.downstream.index("attn.L1.H0")
    assert torch.isnan(edges.scores[i, j])
    assert not torch.isnan(edges.scores[edges.upstream.index("attn.L1.H0"), edges.downstream.index("mlp.L1")])


def test_extract_circuit_drops_edges_that_never_reach_the_logits():
    ups, downs = ["embed", "attn.L0.H0", "attn.L1.H0"], ["attn.L0.H0", "attn.L1.H0", "logits"]
    scores = torch.tensor([[5.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, 0.0, 0.0]])
    scores[0, 1] = 4.0  # embed -> L1.H0, but L1.H0 has no kept edge onward
    kept = extract_circuit(EdgeScores(ups, downs, scores), k=3)
    assert {(s, d) for s, d, _ in kept} == {("embed", "attn.L0.H0"), ("attn.L0.H0", "logits")}


def test_faithfulness_of_the_whole_model_is_one(tiny_gemma):
    task = induction_task(tiny_gemma.tokenizer, n=4)
    every = {(l, h) for l in range(3) for h in range(4)}
    assert abs(faithfulness(tiny_gemma, task, every)["faithfulness"] - 1) < 1e-5


def test_a_model_compared_with_itself_has_no_emergent_or_lost_heads(tiny_gemma):
    task = induction_task(tiny_gemma.tokenizer, n=3)
    result = compare(tiny_gemma, tiny_gemma, task, n_edges=15, steps=1)
    assert result.emergent == [] and result.lost == [] and result.shared
    pick = task.select([i for i, c in enumerate(task.clean) if c in result.metadata["pick_prompts"]])
    assert build_circuit(tiny_gemma, pick, 15, 1).heads == set(result.shared)


def test_cohorts_record_first_appearance_and_survival():
    circs = [{(0, 1)}, {(0, 1), (2, 3)}, {(2, 3)}]
    c = cohorts(circs, [0, 10, 20])
    assert c["first_seen"] == {(0, 1): 0, (2, 3): 10}
    assert c["survived"] == {(0, 1): False, (2, 3): True}
    assert c["counts"] == {0: [1, 1, 0], 10: [0, 1, 1]}
