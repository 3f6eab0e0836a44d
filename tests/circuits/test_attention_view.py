"""Attention view: per-head patterns of one prompt, token-labelled heatmaps, head specs."""
import pytest
import torch

from metalens.circuits.attention import attention_heatmap, attention_patterns, parse_heads

PROMPT = "abcab"


def test_patterns_are_causal_distributions_over_keys(tiny_gemma):
    tokens, patterns = attention_patterns(tiny_gemma, PROMPT, [(0, 1), (2, 3)])
    assert set(patterns) == {(0, 1), (2, 3)}
    n = len(tokens)
    for pattern in patterns.values():
        assert pattern.shape == (n, n)
        torch.testing.assert_close(pattern.sum(-1), torch.ones(n))
        assert torch.all(pattern.triu(diagonal=1) == 0)  # no query looks ahead


def test_heads_of_one_layer_come_from_that_layers_pattern(tiny_llama):
    _, patterns = attention_patterns(tiny_llama, PROMPT, [(1, 0), (1, 2)])
    assert not torch.allclose(patterns[(1, 0)], patterns[(1, 2)])


def test_heatmap_labels_both_axes_with_the_tokens(tiny_gemma):
    tokens, patterns = attention_patterns(tiny_gemma, PROMPT, [(1, 2)])
    fig = attention_heatmap(tokens, patterns[(1, 2)], "L1.H2")
    assert list(fig.layout.xaxis.ticktext) == tokens and list(fig.layout.yaxis.ticktext) == tokens
    assert tokens[1:] == list(PROMPT)  # repeated tokens keep their own positions
    assert fig.layout.title.text == "L1.H2"


def test_parse_heads_reads_both_spellings():
    assert parse_heads(["5.1", "L11.H2"]) == [(5, 1), (11, 2)]
    assert parse_heads("0.3, l2.h0") == [(0, 3), (2, 0)]


def test_bad_head_spec_names_the_format_and_the_valid_range(tiny_gemma):
    with pytest.raises(ValueError, match=r"Bad head '5-1'.*'L\.H'.*layers 0-2 and heads 0-3"):
        parse_heads(["5-1"], model=tiny_gemma)
    with pytest.raises(ValueError, match=r"L3\.H0 is out of range.*layers 0-2 and heads 0-3"):
        parse_heads(["3.0"], model=tiny_gemma)
    with pytest.raises(ValueError, match=r"L0\.H4 is out of range"):
        attention_patterns(tiny_gemma, PROMPT, [(0, 4)])
