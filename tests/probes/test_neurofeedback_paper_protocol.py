"""The paper protocol (Ji-An et al., 2025): sentences as the model's own assistant replies, the
projection/SD label rule, the 2 x 2 flip control and its wiring into results.json and the CLI."""
import json

import numpy as np
import pytest
import torch
from metalens.probes import (
    NeurofeedbackConfig,
    NeurofeedbackResult,
    fit_axes,
    run_neurofeedback,
)
from metalens.probes.control import span_means_by_layer
from metalens.probes.directions import fit_paper_axes
from metalens.probes.flip_control import FlipControlResult
from metalens.probes.prompts import render

SENTS = ["I ran.", "I hid a cat.", "I ate."]


def role_before(model, ids, pos):
    """The last chat role tag (user/assistant/system) before token `pos`."""
    tags = {model.tokenizer.convert_tokens_to_ids(f"<|{r}|>"): r for r in ("user", "assistant", "system")}
    return next(tags[t] for t in reversed(ids[:pos]) if t in tags)


def test_paper_prompt_puts_each_sentence_and_its_score_in_the_assistant_turn(tiny_llama):
    r = render(tiny_llama, SENTS, [0, 1, 0], "report", protocol="paper")
    eos = tiny_llama.tokenizer.eos_token_id
    for (a, b), label_pos, sentence in zip(r.sentence_spans, r.label_pos, SENTS):
        assert tiny_llama.tokenizer.decode(r.input_ids[a:b]) == sentence
        assert role_before(tiny_llama, r.input_ids, a) == "assistant"
        assert b < label_pos and eos not in r.input_ids[b:label_pos]  # the score closes the same reply
    assert [r.input_ids[p] for p in r.label_pos] == tiny_llama.tokenizer.convert_tokens_to_ids(["0", "1", "0"])
    # The strict protocol shows the sentence as the user's input: the same check tells them apart.
    strict = render(tiny_llama, SENTS, [0, 1, 0], "report")
    assert role_before(tiny_llama, strict.input_ids, strict.sentence_spans[0][0]) == "user"


def test_paper_control_prompt_imposes_the_label_in_the_user_turn_and_leaves_the_reply_open(tiny_llama):
    r = render(tiny_llama, SENTS, [0, 1, 1], "control", protocol="paper")
    a, b = r.sentence_spans[-1]
    assert role_before(tiny_llama, r.input_ids, a) == "assistant" and b == len(r.input_ids)  # no end of turn after it
    assert role_before(tiny_llama, r.input_ids, r.label_pos[-1]) == "user"
    assert r.input_ids[r.label_pos[-1]] == tiny_llama.tokenizer.convert_tokens_to_ids("1")


def test_base_model_gets_the_plain_text_rendering_of_the_same_turns(tiny_gemma):
    r = render(tiny_gemma, SENTS[:1], [1], "report", protocol="paper")
    assert "User: Say a sentence.\nAssistant: I ran. [Score: {1}]" in r.text


def test_fit_context_activation_is_the_mean_from_the_assistant_tag_through_the_end(tiny_llama):
    prompts = [render(tiny_llama, [s], [0], "fit", protocol="paper") for s in SENTS]
    got = span_means_by_layer(tiny_llama, [0, 1], prompts, 0, batch_size=2, span="reply")
    eos = tiny_llama.tokenizer.eos_token_id  # the tiny template's end of turn
    for k, r in enumerate(prompts):
        a, b = r.reply_span
        # The authors' span: just after the assistant tag, through the end of the prompt, end of turn included;
        # the sentence tokens alone (the strict protocol's span) stop one token short.
        assert role_before(tiny_llama, r.input_ids, a) == "assistant" and r.input_ids[a - 1] != eos
        assert (a, b) == (r.sentence_spans[0][0], len(r.input_ids)) and r.sentence_spans[0][1] == b - 1
        assert r.input_ids[b - 1] == eos
        with torch.no_grad():
            hidden = tiny_llama.hf(input_ids=torch.tensor([r.input_ids]), output_hidden_states=True).hidden_states
        for layer in (0, 1):  # HF applies the final norm to the last hidden state: blocks 0 and 1 of 3 only
            assert torch.allclose(got[layer][k], hidden[layer + 1][0, a:b].mean(0), atol=1e-4)
            sentence_only = hidden[layer + 1][0, slice(*r.sentence_spans[0])].mean(0)
            assert not torch.allclose(got[layer][k], sentence_only, atol=1e-4)


def test_base_model_paper_span_is_the_reply_after_assistant_colon(tiny_gemma):
    # No chat template: the fit prompt ends with the reply (as the authors' no-template format does), and the
    # span starts just after "Assistant:", so it holds the reply's leading space token too.
    r = render(tiny_gemma, ["I ran far."], [0], "fit", protocol="paper")
    a, b = r.reply_span
    assert r.text.endswith("Assistant: I ran far.") and b == len(r.input_ids)
    assert tiny_gemma.tokenizer.decode(r.input_ids[a:b]) == " I ran far."
    assert r.sentence_spans[0] == (a + 1, b)
    ctl = render(tiny_gemma, ["I hid.", "I ran."], [0, 1], "control", protocol="paper")
    assert ctl.reply_span == (ctl.sentence_spans[-1][0] - 1, len(ctl.input_ids))


def test_strict_prompts_have_no_reply_span_and_refuse_it(tiny_llama):
    r = render(tiny_llama, SENTS, [0, 1, 0], "control")
    assert r.reply_span is None
    with pytest.raises(ValueError, match="protocol='paper'"):
        span_means_by_layer(tiny_llama, [0], [r], -1, span="reply")


def skewed(n=400, d=12, seed=0):
    """A right-skewed high-variance direction (mean far from median) and a label carried by a
    low-variance one, with 80% of labels 1 (so the LR boundary is far from the median)."""
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.8).astype(int)
    X = rng.normal(size=(n, d)) * 0.3
    X[:, 0] += rng.exponential(5.0, n)
    X[:, 3] += 1.5 * y
    return torch.tensor(X, dtype=torch.float32), y


def test_paper_pc_label_is_the_sign_of_projection_over_the_fit_sd():
    X, y = skewed()
    axes = fit_paper_axes(X, y, pcs=(1,))
    Xc = X.double() - X.double().mean(0)
    proj = Xc @ axes.directions[0].double()
    assert torch.allclose(axes.scores(X)[:, 0].double(), proj / proj.std(unbiased=False), atol=1e-4)
    assert torch.equal(axes.labels(X)[:, 0], (proj >= 0).long())
    # Split at the mean, not the median: on a skewed axis the labels are unbalanced, unlike fit_axes'.
    assert abs(axes.labels(X)[:, 0].float().mean() - 0.5) > 0.1
    assert fit_axes(X, y, pcs=(1,)).labels(X)[:, 0].float().mean() == 0.5


def test_paper_lr_axis_is_saga_on_raw_activations_split_at_its_decision_boundary():
    from sklearn.linear_model import LogisticRegression

    X, y = skewed()
    axes = fit_paper_axes(X, y, pcs=(), seed=0)
    clf = LogisticRegression(solver="saga", max_iter=1000, random_state=0).fit(X.double().numpy(), y)
    decision = clf.decision_function(X.double().numpy())
    lr = axes.index("LR")
    assert np.array_equal(axes.labels(X)[:, lr].numpy(), (decision >= 0).astype(int))
    assert np.allclose(axes.scores(X)[:, lr].numpy(), decision / decision.std(), atol=1e-3)
    assert axes.labels(X)[:, lr].float().mean() > 0.65  # the boundary follows the 80/20 classes, not the median
    assert axes.metadata["lr_solver"] == "saga" and axes.rule == "paper"


def test_paper_axes_round_trip_keeps_scales_and_rule(tmp_path):
    from metalens.probes import Axes

    X, y = skewed()
    axes = fit_paper_axes(X, y, pcs=(1, 2))
    back = Axes.load(axes.save(tmp_path / "axes"))
    assert back.rule == "paper" and torch.equal(back.scales, axes.scales) and torch.equal(back.labels(X), axes.labels(X))


def planted_flip(token=1.0, control=0.0, trials=16, seed=0):
    """Projections [1 target, trials, 2 flip, 2 imposed, 1 axis]: per trial a sentence baseline
    (sd 3), a direct label-token effect `token` whenever "1" is imposed, and a true control effect
    `control` towards the requested side of the axis (the high side is imposed 1 with true labels,
    imposed 0 with flipped ones), plus noise (sd 0.1)."""
    rng = np.random.default_rng(seed)
    proj = np.zeros((1, trials, 2, 2, 1))
    base = rng.normal(size=trials) * 3
    for flip in (0, 1):
        for imposed in (0, 1):
            high = imposed if flip == 0 else 1 - imposed
            proj[0, :, flip, imposed, 0] = base + token * imposed + control * high + rng.normal(size=trials) * 0.1
    pcs = np.concatenate([proj, rng.normal(size=(1, trials, 2, 2, 5)) * 0.1], axis=-1)  # the target is PC1 of 6
    return FlipControlResult("implicit", ["PC1"], ["PC1"], proj, pcs, [f"PC{k}" for k in range(1, 7)], [], "", {})


def test_flip_design_cancels_a_direct_label_token_effect():
    row = planted_flip(token=1.0, control=0.0).effects()[0]
    # Without the flip condition the token effect looks like strong control...
    assert row["noflip_dz"] > 3 and row["label_token_dz"] > 3
    # ...the 2x2 interaction removes it.
    assert abs(row["diff"]) < 0.1 and row["p"] > 0.05


def test_only_the_flip_design_sets_controllable_and_specific():
    token_only = planted_flip(token=1.0, control=0.0).effects()[0]
    real = planted_flip(token=1.0, control=0.5).effects()[0]
    assert token_only["cancels_label_token"] and token_only["controllable"] is False
    assert real["controllable"] is True and real["verdict"] is None
    # The MDE of the 2x2 test, at the Holm family's strictest alpha (one target here).
    assert real["mde"]["n"] == 16 and real["mde"]["alpha"] == 0.05 and real["mde"]["value"] > 0


def test_flip_design_keeps_true_control_next_to_a_token_effect():
    row = planted_flip(token=1.0, control=0.5).effects()[0]
    assert row["diff"] == pytest.approx(0.5, abs=0.1) and row["dz_target"] > 3 and row["p_holm"] < 1e-3
    assert abs(row["d_target"]) < row["dz_target"]  # the paper's unpaired d pools the spread between sentences
    # Precision: |effect| on target over the mean |effect| on all 6 PCs (the target among them).
    assert row["n_precision_pcs"] == 6 and row["precision_dz"] > 1
    assert row["precision"] == pytest.approx(abs(row["d_target"]) / np.mean(np.abs(row["d_by_pc"])))


@pytest.fixture(scope="module")
def paper_run(tmp_path_factory, tiny_llama):
    out = tmp_path_factory.mktemp("paper")
    cfg = NeurofeedbackConfig.quick(protocol="paper", layer=1, layers=(1, 2), max_sentences=40, n_values=(0, 1, 2),
                                    draws=2, control_examples=2, implicit_trials=3, explicit_trials=1, max_new_tokens=3)
    run_neurofeedback(tiny_llama, cfg, out=out, progress=False)
    return out


def test_results_json_says_which_protocol_ran_and_keeps_both_criteria(paper_run):
    data = json.loads((paper_run / "results.json").read_text())
    assert data["protocol"] == "paper" and data["reporting"]["metadata"]["protocol"] == "paper"
    assert data["axes"]["rule"] == "paper" and "[Score: {" in data["reporting"]["example_prompt"]
    assert all("p_vs_half" in row for row in data["reporting"]["curves"]["LR"])  # the paper's criterion per N
    assert all("p_holm" in r and "p_vs_half_holm" in r for r in data["reporting"]["tests"])  # ours and theirs
    assert all(0 <= r["surface_accuracy"] <= 1 for r in data["reporting"]["tests"])  # surface baseline still wired
    assert all("surface_accuracy" in r and "above_half" in r for r in data["summary"]["rows"])
    assert data["summary"]["protocol"] == "paper"
    from metalens.probes.neurofeedback import PAPER_SPAN
    assert NeurofeedbackResult.load(paper_run).axes.metadata["positions"] == PAPER_SPAN  # the authors' fit span


def test_paper_run_controls_in_2x2_with_precision_over_all_pcs(paper_run):
    data = json.loads((paper_run / "results.json").read_text())
    imp = data["implicit"]
    assert np.asarray(imp["projections"]).shape == (1, 3, 2, 2, 3)  # target LR; 3 trials; flip; imposed; 3 axes
    n_fit = data["data"]["n_fit"]
    assert all(e["n_precision_pcs"] == n_fit - 1 for e in imp["effects"])  # every PC of the fit split, not 3 axes
    assert data["explicit"]["design"].startswith("2x2")


def test_paper_run_averages_reporting_over_layers(paper_run):
    data = json.loads((paper_run / "results.json").read_text())
    assert [x["layer"] for x in data["layers"]] == [1, 2] and data["reporting"]["metadata"]["layers"] == [1, 2]


def test_average_reporting_means_the_layers_runs():
    from metalens.probes.reporting import ReportingResult, average_reporting

    items = np.arange(6).reshape(2, 3)
    runs = [ReportingResult(["A"], [0, 2], np.full((1, 2, 3), p), np.full((2, 3), p), np.ones((1, 2, 3)), "", {}, items)
            for p in (0.2, 0.9)]
    avg = average_reporting(runs, [3, 5])
    assert np.allclose(avg.p_correct, 0.55) and avg.metadata["layers"] == [3, 5]
    runs[1].items = items + 1
    with pytest.raises(ValueError, match="same texts"):
        average_reporting(runs, [3, 5])


def test_strict_stays_the_default_and_layers_need_the_paper_protocol():
    assert NeurofeedbackConfig().protocol == "strict" and NeurofeedbackConfig.paper().protocol == "paper"
    with pytest.raises(ValueError, match="protocol='paper'"):
        NeurofeedbackConfig(layers=(1, 2))
    with pytest.raises(ValueError, match="protocol must be"):
        NeurofeedbackConfig(protocol="papers")


def test_cli_accepts_protocol_paper(monkeypatch, tmp_path, tiny_llama):
    import metalens
    from metalens.cli import build_parser, main

    assert build_parser().parse_args(["neurofeedback", "--model", "x", "--out", "o"]).protocol == "strict"
    monkeypatch.setattr(metalens, "load_model", lambda name, device=None, dtype=None: tiny_llama)
    out = tmp_path / "cli"
    argv = ["neurofeedback", "--model", "tiny", "--quick", "--protocol", "paper", "--layers", "1", "--out", str(out),
            "--max-sentences", "40", "--pcs", "1", "--n-values", "0,1,2", "--draws", "2", "--control-examples", "2",
            "--implicit-trials", "2", "--explicit-targets", ""]
    assert main(argv) == 0
    data = NeurofeedbackResult.load(out).data
    assert data["protocol"] == "paper" and data["config"]["protocol"] == "paper" and data["config"]["pcs"] == [1]
