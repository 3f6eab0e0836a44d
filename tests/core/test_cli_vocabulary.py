"""One CLI vocabulary (#26): walking every verb's parser, a shared flag has one spelling and one meaning.

`--layers 3 6 | all` everywhere (never `--layer`); `--model`, `--device`, `--dtype`, `--out`, `--seed`
and `--data` built by `metalens.options`; every numeric flag checked by a `metalens.options` checker, so
a NaN, an infinity or a non-number is refused at the boundary instead of reaching the run.
"""
from __future__ import annotations

import argparse

import pytest

from metalens import options
from metalens.cli import build_parser


def _verbs(parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()):
    """(verb path, parser) for every leaf verb, `introspect train` and the other subcommands included."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _verbs(sub, (*prefix, name))
            return
    yield prefix, parser


VERBS = list(_verbs(build_parser()))
IDS = [" ".join(path) for path, _ in VERBS]


def _options(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    return [a for a in parser._actions if a.option_strings and not isinstance(a, argparse._HelpAction)]


def _flag(parser: argparse.ArgumentParser, name: str) -> argparse.Action | None:
    return next((a for a in _options(parser) if name in a.option_strings), None)


def _refuses(check, text: str) -> bool:
    try:
        check(text)
    except argparse.ArgumentTypeError:
        return True
    return False


def _numeric(action: argparse.Action) -> bool:
    values = action.default if isinstance(action.default, list) else [action.default]
    has_number = any(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
    return action.type in (int, float) or (has_number and action.nargs != 0) or \
        getattr(action.type, "__module__", "") == options.__name__ and action.type.__name__.startswith(
            ("integer", "number", "comma-separated integers"))


def test_the_walk_reaches_every_verb_and_subcommand():
    names = set(IDS)
    assert {"capture", "probe", "neurofeedback", "steer", "steer-ab", "mentor", "heads", "emergent-heads", "lens",
            "atlas", "posttrain", "demo", "introspect train", "introspect sample"} <= names, names


@pytest.mark.parametrize("path,parser", VERBS, ids=IDS)
def test_no_verb_spells_layers_in_the_singular(path, parser):
    assert not [a.option_strings for a in _options(parser) if "--layer" in a.option_strings]


@pytest.mark.parametrize("path,parser", VERBS, ids=IDS)
def test_layers_is_one_or_more_block_numbers_or_all(path, parser):
    layers = _flag(parser, "--layers")
    if layers is None:
        pytest.skip(f"{' '.join(path)} takes no layers")
    assert layers.nargs == "+" and layers.type is options.layer_token, (layers.nargs, layers.type)
    assert layers.option_strings == ["--layers"]


@pytest.mark.parametrize("path,parser", VERBS, ids=IDS)
def test_shared_flags_have_one_meaning(path, parser):
    model = _flag(parser, "--model")
    if model is not None:
        assert model.type is None and model.help.startswith("embedded name, local dir, hub id or random:NAME")
    device = _flag(parser, "--device")
    if device is not None:
        assert device.type is None and device.choices is None and device.default is None
        assert device.help.startswith("cpu, cuda")
    dtype = _flag(parser, "--dtype")
    if dtype is not None:
        assert list(dtype.choices) == ["float32", "bfloat16", "float16"] and dtype.default is None
    out = _flag(parser, "--out")
    if out is not None:
        assert out.type is options.out_path, out.type
    seed = _flag(parser, "--seed")
    if seed is not None:
        assert seed.type is options.nonneg_int and seed.option_strings == ["--seed"], seed.type
    data = _flag(parser, "--data")
    if data is not None:  # an existing file (a verb may also accept the names of its shipped sets)
        assert data.type is not None and _refuses(data.type, "/no/such/file.jsonl") and _refuses(data.type, "/")


@pytest.mark.parametrize("path,parser", VERBS, ids=IDS)
def test_every_numeric_flag_is_checked_for_range_and_finiteness(path, parser):
    loose = []
    for action in filter(_numeric, _options(parser)):
        check = action.type
        if check in (None, int, float, str) or not all(_refuses(check, bad) for bad in ("nan", "inf", "x")):
            loose.append((action.option_strings[0], check))
    assert not loose, f"numeric flags without a metalens.options checker: {loose}"


def test_the_numeric_checkers_come_from_metalens_options():
    """Area checkers (e.g. introspect's --cv folds) build on the shared ones; none parses with bare int/float."""
    bare = [(" ".join(path), a.option_strings[0]) for path, parser in VERBS for a in _options(parser)
            if a.type in (int, float)]
    assert not bare
