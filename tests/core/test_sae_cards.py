"""Feature cards: top contexts from the corpus, logit effect through the final norm's scale, histogram."""
from __future__ import annotations

import pytest
import torch

import metalens
from metalens.sae import SAE, FeatureCard, feature_cards, load_cards, logit_effect, save_cards
from metalens.testing import tiny_model

SITE = "blocks.1.hook_resid_post"
TEXTS = ["The cat sat on the mat.", "A quick brown fox jumps over it.", "Hello there, how are you?",
         "Numbers 1 2 3 4 and 5.", "zzz yyy xxx www", "Some more words to read here."]


def random_sae(d_in=64, d_sae=16, seed=0, site=SITE) -> SAE:
    gen = torch.Generator().manual_seed(seed)
    return SAE(W_enc=torch.randn(d_in, d_sae, generator=gen) / 8, W_dec=torch.randn(d_sae, d_in, generator=gen),
               b_enc=torch.randn(d_sae, generator=gen) / 8, b_dec=torch.zeros(d_in), site=site)


@pytest.fixture(scope="module", params=["gemma3", "llama"])
def scaled_model(request):
    """A tiny model whose final norm has a non-trivial scale (random init leaves gemma's at 1 + 0)."""
    model = tiny_model(request.param)
    with torch.no_grad():
        model.hf.model.norm.weight.copy_(torch.randn(model.d_model, generator=torch.Generator().manual_seed(1)))
    return model


def test_logit_effect_is_the_decoder_row_through_the_norm_scale_and_unembedding(scaled_model):
    sae = random_sae()
    w = scaled_model.hf.model.norm.weight.detach().float()
    g = 1 + w if "Gemma" in type(scaled_model.hf).__name__ else w  # gemma's RMSNorm scales by 1 + weight
    W_U = scaled_model.hf.get_output_embeddings().weight.detach().float()
    direct = (sae.W_dec[[3, 7]] * g) @ W_U.T
    torch.testing.assert_close(logit_effect(scaled_model, sae, [3, 7]), direct, rtol=1e-4, atol=1e-4)
    card = feature_cards(scaled_model, sae, [7], TEXTS, n_logits=5, progress=False)[0]
    top = direct[1].topk(5)
    assert [t["id"] for t in card.top_tokens] == top.indices.tolist()
    torch.testing.assert_close(torch.tensor([t["value"] for t in card.top_tokens]), top.values, rtol=1e-4, atol=1e-4)
    assert [t["id"] for t in card.bottom_tokens] == (-direct[1]).topk(5).indices.tolist()


def test_top_context_is_the_largest_activation_past_bos_and_matches_encoding_that_token(tiny_gemma):
    sae = random_sae()
    card = feature_cards(tiny_gemma, sae, [2], TEXTS, n_contexts=3, window=4, chunk_texts=4, progress=False)[0]
    acts = metalens.capture(tiny_gemma, TEXTS, [SITE], positions="all", progress=False)
    per_text = [sae.encode(a)[1:, 2] for a in acts.split(SITE)]  # BOS dropped
    flat = torch.cat(per_text)
    assert card.n_tokens == len(flat) and card.n_active == int((flat != 0).sum())
    assert sum(card.hist_counts) == card.n_active
    assert [round(c["activation"], 5) for c in card.contexts] == [round(v, 5) for v in flat.topk(3).values.tolist()]
    best = card.contexts[0]
    assert best["position"] >= 1
    assert best["activation"] == pytest.approx(float(per_text[best["text"]][best["position"] - 1]), rel=1e-5)
    text = TEXTS[best["text"]]
    assert best["token"] == text[best["position"] - 1]  # the character tokenizer: position p is character p - 1
    assert "".join(best["left"]) == text[max(0, best["position"] - 5):best["position"] - 1]


def test_several_features_in_one_pass_equal_one_at_a_time(tiny_gemma):
    sae = random_sae()
    both = feature_cards(tiny_gemma, sae, [1, 5], TEXTS, progress=False)
    alone = feature_cards(tiny_gemma, sae, [5], TEXTS, progress=False)[0]
    pair, one = both[1].to_dict(), alone.to_dict()
    for key in ("top_tokens", "bottom_tokens"):  # a matmul over 2 rows rounds differently from 1
        assert [t["id"] for t in pair.pop(key)] == [t["id"] for t in one.pop(key)]
    assert pair == one
    assert both[0].feature == 1 and both[0].contexts != alone.contexts


def test_card_round_trips_through_json_and_draws_a_figure(tiny_gemma, tmp_path):
    cards = feature_cards(tiny_gemma, random_sae(), [0, 4], TEXTS, corpus="test texts", progress=False)
    path = cards[0].save(tmp_path / "card.json")
    assert FeatureCard.load(path) == cards[0]
    assert load_cards(save_cards(cards, tmp_path / "cards.json")) == cards
    fig = cards[0].figure()
    assert [t.type for t in fig.data] == ["bar", "bar", "table"]
    assert "Feature 0" in fig.layout.title.text


def test_a_site_outside_the_residual_stream_gets_no_logit_effect(tiny_gemma):
    sae = random_sae(d_in=64, site="blocks.1.attn.hook_z")  # 4 heads x 16: same width, not residual space
    with pytest.raises(ValueError, match="not the residual stream"):
        logit_effect(tiny_gemma, sae, [0])
    card = feature_cards(tiny_gemma, sae, [0], TEXTS, progress=False)[0]
    assert card.top_tokens == [] and card.logit_note.startswith("no logit effect")


@pytest.mark.parametrize("features, match", [([16], "out of range"), ([], "No features"), ([-1], "out of range")])
def test_bad_feature_indices_are_refused(tiny_gemma, features, match):
    with pytest.raises(ValueError, match=match):
        feature_cards(tiny_gemma, random_sae(), features, TEXTS, progress=False)


def test_an_sae_from_another_model_is_refused(tiny_gemma):
    with pytest.raises(ValueError, match="another site or model"):
        feature_cards(tiny_gemma, random_sae(d_in=32), [0], TEXTS, progress=False)


def test_a_card_of_another_format_is_refused(tmp_path):
    path = tmp_path / "x.json"
    path.write_text('{"format": {"name": "heads-results", "version": 1}}')
    with pytest.raises(ValueError, match="Not a feature card"):
        FeatureCard.load(path)


def test_a_transcoders_card_reads_its_input_site_and_writes_through_its_out_site(scaled_model):
    gen = torch.Generator().manual_seed(3)
    tc = SAE(W_enc=torch.randn(64, 8, generator=gen) / 8, W_dec=torch.randn(8, 64, generator=gen), b_enc=torch.zeros(8),
             b_dec=torch.zeros(64), site="blocks.1.hook_mlp_in", out_site="blocks.1.hook_mlp_out")
    card = feature_cards(scaled_model, tc, [2], TEXTS, n_logits=3, progress=False)[0]
    acts = metalens.capture(scaled_model, TEXTS, ["blocks.1.hook_mlp_in"], positions="all", progress=False)
    flat = torch.cat([tc.encode(a)[1:, 2] for a in acts.split("blocks.1.hook_mlp_in")])
    assert card.max_activation == pytest.approx(float(flat.max()), rel=1e-5)
    assert [t["id"] for t in card.top_tokens] == logit_effect(scaled_model, tc, [2])[0].topk(3).indices.tolist()


def test_a_dead_feature_gets_an_empty_card_that_still_saves_and_draws(tiny_gemma, tmp_path):
    sae = random_sae()
    sae.b_enc[3] = -1e4  # never active
    card = feature_cards(tiny_gemma, sae, [3], TEXTS, progress=False)[0]
    assert card.n_active == 0 and card.contexts == [] and card.hist_counts == [] and card.n_tokens > 0
    assert card.density == 0.0 and FeatureCard.load(card.save(tmp_path / "dead.json")) == card
    assert len(card.figure().data) == 3
