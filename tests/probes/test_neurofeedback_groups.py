"""Near-copies (one action in several time frames, one fact's true and false versions) share a
group, and no comparison puts a group on both sides: not the fit/pool split, not a probe's
cross-validation or held-out split, not two items of one prompt."""
import json
from collections import Counter

import numpy as np
import pytest

from metalens.data import record_groups
from metalens.probes import load_dataset, train_probe
from metalens.probes.datasets import sample_distinct_groups
from metalens.probes.directions import split_indices
from metalens.probes.probe import group_folds
from tests.scripts import load_tool

_datagen = load_tool("probes_datagen")
_ACTIONS = _datagen.ACCEPTABLE + _datagen.UNACCEPTABLE


def action_of(text: str) -> str:
    """The action a moral sentence is made from, read off the text (not from the `group` field)."""
    found = [a for a in _ACTIONS if text.endswith(f"I {a}.")]
    assert len(found) == 1, text
    return found[0]


def test_shipped_moral_groups_are_its_actions_and_facts_groups_their_subjects():
    moral = load_dataset("moral")
    assert len(set(moral.groups)) == 132 and set(Counter(moral.groups).values()) == {5}
    by_group = {}
    for text, group, label in zip(moral.texts, moral.groups, moral.labels):
        by_group.setdefault(group, set()).add((action_of(text), label))
    assert all(len(v) == 1 for v in by_group.values())  # one action, one label per group
    facts = load_dataset("facts")
    sizes = Counter(facts.groups)
    assert len(sizes) < len(facts) and max(sizes.values()) >= 3
    capital = [t for t, g in zip(facts.texts, facts.groups) if g == "capital:France"]
    assert capital and all(t.startswith("The capital of France is") for t in capital)


def test_loader_reads_an_optional_group_and_defaults_to_one_group_per_record(tmp_path):
    path = tmp_path / "mine.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in [{"text": "a", "label": 0, "group": "g"},
                                                         {"text": "a!", "label": 0, "group": "g"},
                                                         {"text": "b", "label": 1}, {"text": "c", "label": 1}]))
    ds = load_dataset(path)
    assert ds.groups[0] == ds.groups[1] and len(set(ds.groups)) == 3
    assert ds.subset([1, 2]).groups == [ds.groups[1], ds.groups[2]]
    with pytest.raises(ValueError, match="group id"):
        record_groups([{"group": 1.5}])


def test_group_split_never_puts_a_group_on_both_sides():
    groups = load_dataset("moral").balanced(200).groups
    fit, pool = split_indices(len(groups), 0.5, seed=0, groups=groups)
    assert sorted([*fit, *pool]) == list(range(200))
    assert not {groups[i] for i in fit} & {groups[i] for i in pool}
    assert abs(len(fit) - 100) <= 5


def test_group_folds_never_put_a_group_on_both_sides():
    rng = np.random.default_rng(0)
    groups = np.repeat(np.arange(40), 5)
    labels = np.repeat(rng.integers(0, 2, 40), 5)
    for train, test in group_folds(labels, groups, 5, seed=0):
        assert not set(groups[train]) & set(groups[test])
        assert set(labels[test]) == {0, 1}


def near_copies(n_groups=40, per_group=5, d=64, seed=0):
    """Each group is a random point plus small noise; labels are random per group: nothing but
    group identity predicts a label, so a probe can only score above chance by seeing the group."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_groups, d)) * 3
    groups = np.repeat(np.arange(n_groups), per_group)
    X = centres[groups] + rng.normal(size=(len(groups), d)) * 0.3
    y = np.repeat(rng.permutation([0, 1] * (n_groups // 2)), per_group)
    return X, y, groups


def test_group_aware_cv_is_not_fooled_by_near_copies():
    X, y, groups = near_copies()
    leaky = train_probe(X, y)
    assert leaky.cv_accuracy > 0.9  # rows split apart: the probe recognises a group it was trained on
    grouped = train_probe(X, y, groups=groups)
    assert grouped.cv_accuracy < 0.7 and grouped.test_accuracy < 0.8
    assert grouped.metadata["grouped"] and grouped.metadata["n_groups"] == 40


def test_sample_distinct_groups_draws_one_item_per_group():
    groups = np.repeat(np.arange(10), 3)
    rng = np.random.default_rng(0)
    for _ in range(20):
        idx = sample_distinct_groups(rng, groups, 10)
        assert len(set(groups[idx])) == 10
    with pytest.raises(ValueError, match="groups"):
        sample_distinct_groups(rng, groups, 11)


@pytest.fixture(scope="module")
def recorded_run(tiny_llama):
    """A run on the shipped moral set, recording every prompt rendered for reporting and control."""
    from metalens.probes import NeurofeedbackConfig, control, reporting, run_neurofeedback

    prompts = []
    originals = {m: m.render for m in (reporting, control)}

    def recording(original):
        def render(model, sentences, labels, task="report", *args, **kwargs):
            prompts.append([s for s in sentences if s])
            return original(model, sentences, labels, task, *args, **kwargs)
        return render

    for m, original in originals.items():
        m.render = recording(original)
    try:
        cfg = NeurofeedbackConfig.quick(layer=1, max_sentences=120, pcs=(1,), n_values=(0, 4, 16), draws=4,
                                        control_examples=12, implicit_trials=4, explicit_targets=())
        res = run_neurofeedback(tiny_llama, cfg, progress=False)
    finally:
        for m, original in originals.items():
            m.render = original
    return res, prompts


def test_neurofeedback_fit_and_pool_share_no_action(recorded_run):
    res, _ = recorded_run
    ds = load_dataset("moral").balanced(120, seed=0)
    fit_actions = {action_of(ds.texts[i]) for i in res.data["data"]["fit_indices"]}
    pool_actions = {action_of(ds.texts[i]) for i in res.data["data"]["pool_indices"]}
    assert not fit_actions & pool_actions


def test_no_reporting_or_control_prompt_holds_two_sentences_of_one_action(recorded_run):
    res, prompts = recorded_run
    assert len(prompts) > 10 and max(len(p) for p in prompts) >= 13
    for sentences in prompts:
        actions = [action_of(s) for s in sentences if s != "I walked."]  # label_token_ids' probe prompt
        assert len(actions) == len(set(actions)), sentences
    assert res.data["reporting"]["metadata"]["one_item_per_group"]


def test_probe_sweep_on_moral_keeps_each_action_on_one_side_of_every_split(tiny_gemma, monkeypatch):
    import sklearn.model_selection as ms

    import metalens
    from metalens.probes import ProbeSweepConfig, run_probe_sweep
    from metalens.sites import resid_post

    real, seen = ms.cross_val_score, []

    def recording(estimator, X, y, *, cv=None, **kwargs):
        splits = list(cv.split(X, y, kwargs.get("groups"))) if hasattr(cv, "split") else list(cv)
        seen.append((np.asarray(X), splits))
        return real(estimator, X, y, cv=splits, **kwargs)

    monkeypatch.setattr(ms, "cross_val_score", recording)
    run_probe_sweep(tiny_gemma, ProbeSweepConfig(dataset="moral", layers=(1,), max_sentences=80, cv=3), progress=False)
    ds = load_dataset("moral").balanced(80, seed=0)
    acts = metalens.capture(tiny_gemma, ds.texts, [resid_post(1)], positions="mean", progress=False)[resid_post(1)]
    acts = acts.double().numpy()
    (X_fit, splits), = seen
    rows = np.array([np.abs(acts - x).sum(1).argmin() for x in X_fit])  # which sentence each training row is
    assert len(set(rows)) == len(rows)
    actions = np.array([action_of(t) for t in ds.texts])
    held_out = np.setdiff1d(np.arange(len(ds)), rows)
    assert len(held_out) > 0 and not set(actions[rows]) & set(actions[held_out])
    for train, test in splits:
        assert not set(actions[rows[train]]) & set(actions[rows[test]])
