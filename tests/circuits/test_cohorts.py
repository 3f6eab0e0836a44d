"""Cohorts over checkpoints: entry step and fate of each head, every checkpoint traced when asked."""
import json

import metalens
from metalens.analyses.posttrain import PosttrainConfig, run_posttrain
from metalens.circuits import EmergentConfig, EmergentResult, run_emergent_heads
from metalens.circuits.cohorts import cohorts, fate, head_cohorts, membership_heatmap
from metalens.circuits.emergent import checkpoint_picks
from metalens.testing import tiny_model

A, B, C, D = (0, 0), (1, 1), (2, 3), (0, 2)


def test_cohorts_record_entry_step_and_whether_a_head_stays():
    circuits, steps = [{A}, {A, B}, {A, D}, {A, B, C}], [0, 5, 10, 15]
    c = cohorts(circuits, steps)
    assert c["first_seen"] == {A: 0, B: 5, D: 10, C: 15}
    assert c["persistent"] == {A: True, B: False, D: False, C: True}
    assert c["survived"] == {A: True, B: True, D: False, C: True}
    assert c["counts"] == {0: [1, 1, 1, 1], 5: [0, 1, 0, 1], 10: [0, 0, 1, 0], 15: [0, 0, 0, 1]}
    assert [fate(c, h) for h in (A, B, D, C, (2, 2))] == ["stays", "returns", "leaves", "stays", "never"]
    assert head_cohorts(c, [C, (2, 2)]) == [{"head": [2, 3], "first_seen": 15, "fate": "stays"},
                                            {"head": [2, 2], "first_seen": None, "fate": "never"}]


def test_membership_heatmap_groups_rows_by_entry_then_fate():
    circuits, steps = [{B}, {A, B}, {A, D}, {A, C}], [0, 5, 10, 15]
    fig = membership_heatmap(circuits, steps, cohorts(circuits, steps), marked=[C])
    rows = list(fig.data[0].y)
    assert rows == ["L1.H1 (in at 0, leaves)", "L0.H0 (in at 5, stays)", "L0.H2 (in at 10, leaves)",
                    "*L2.H3 (in at 15, stays)"]
    assert [list(r) for r in fig.data[0].z] == [[1, 1, 0, 0], [0, 1, 1, 1], [0, 0, 1, 0], [0, 0, 0, 1]]


def test_checkpoint_picks_zero_means_every_checkpoint():
    ckpts = list(range(7))
    assert checkpoint_picks(ckpts, 0) == ckpts and checkpoint_picks(ckpts, 9) == ckpts
    assert checkpoint_picks(ckpts, 3) == [0, 3, 6] and checkpoint_picks(ckpts, 1) == [6]


def test_emergent_heads_trace_every_checkpoint_and_name_the_cohorts_of_the_emergent_heads(tmp_path):
    tiny = tiny_model("gemma3", seed=3)
    tiny.hf.save_pretrained(tmp_path / "base")
    tiny.tokenizer.save_pretrained(tmp_path / "base")
    cfg = PosttrainConfig(steps=5, save_every=1, batch_size=2, n_eval=2, max_new_tokens=3, lr=5e-2, lora_layers=None,
                          checkpoint_accuracy=False)
    run_posttrain(metalens.load_model(str(tmp_path / "base"), device="cpu"), cfg, out=tmp_path / "run", progress=False)
    ecfg = EmergentConfig(task="induction", n=3, n_test=3, n_edges=15, ig_steps=1, n_problems=0, n_random=1,
                          n_boot=0, max_checkpoints=0)
    result = run_emergent_heads(str(tmp_path / "base"), tmp_path / "run", ecfg, out=tmp_path / "em", progress=False)
    assert result.checkpoint_steps == [0, 1, 2, 3, 4, 5] and len(result.checkpoint_circuits) == 6
    assert result.emergent, "lr 5e-2 on every block should move some heads into the circuit"
    saved = json.loads((tmp_path / "em" / "results.json").read_text())
    assert [r["head"] for r in saved["emergent_cohorts"]] == [list(h) for h in result.emergent]
    for row in saved["emergent_cohorts"]:
        if row["first_seen"] is not None:
            assert tuple(row["head"]) in set(result.checkpoint_circuits[result.checkpoint_steps.index(row["first_seen"])])
    assert "Circuit membership over checkpoints" in (tmp_path / "em" / "report.html").read_text()
    loaded = EmergentResult.load(tmp_path / "em")
    assert loaded.checkpoint_circuits == result.checkpoint_circuits and loaded.cohort == result.cohort


def test_emergent_heads_verb_takes_run_pairs_and_max_checkpoints(tmp_path):
    from metalens.cli import build_parser

    run = tmp_path / "grpo"
    run.mkdir()
    args = build_parser().parse_args(["emergent-heads", "--run", str(run), "--out", str(tmp_path / "o"), "--pairs",
                                      "own", "--own-tokens", "6", "--max-checkpoints", "0"])
    assert (args.post, args.pairs, args.own_tokens, args.max_checkpoints) == (run, "own", 6, 0)
