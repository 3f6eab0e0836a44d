"""bench/capture.py runs end to end on a tiny model and reports paired speed-ups with intervals."""
from tests.scripts import load_bench


def test_capture_bench_smoke_reports_paired_speedups(tmp_path):
    out = load_bench("capture").main(["--model", "tiny", "--batch", "2", "--tokens", "32", "--repeats", "2",
                                      "--json", str(tmp_path / "capture.json")])
    methods = out["methods"]
    assert len(methods) == 9 and (tmp_path / "capture.json").exists()
    base = methods["(a) HF forward (full, with logits)"]["speedup"]
    assert base["median"] == 1.0 and base["low"] == 1.0  # the baseline against itself, pair by pair
    for row in methods.values():
        speedup = row["speedup"]
        assert row["tokens_per_s"] > 0 and speedup["n"] == 2
        assert speedup["low"] <= speedup["median"] <= speedup["high"]
    assert out["mid_site"] == "blocks.6.hook_resid_post" and out["last_site"] == "blocks.7.hook_resid_post"
    for depth in ("mid", "last"):  # capture's speed as a share of the hook-free forward to the same block
        share = out["capture_share_of_limit"][depth]
        assert share["n"] == 2 and 0 < share["low"] <= share["median"] <= share["high"]
    full, mid = methods["(a) HF forward (full, with logits)"]["work"], methods["(b) metalens capture " + out["mid_site"]]["work"]
    assert mid["flops"] < full["flops"] and mid["weight_bytes"] < full["weight_bytes"]
    assert out["card"] is None and all(row["roofline_tokens_per_s"] is None for row in methods.values())  # CPU


def test_first_blocks_runs_the_hook_free_forward_to_a_block_and_restores_the_model(tiny_gemma):
    import torch

    import metalens
    from metalens import sites

    limits = load_bench("limits")
    ids = tiny_gemma.tokenize(["abc", "de"])
    layers = tiny_gemma.hf.model.layers
    with torch.no_grad(), limits.first_blocks(tiny_gemma, 2) as base:
        out = base(**ids, use_cache=False).last_hidden_state
    assert tiny_gemma.hf.model.layers is layers and len(layers) == tiny_gemma.n_layers
    cache = metalens.run_with_cache(tiny_gemma, ids["input_ids"], ids["attention_mask"], sites=[sites.resid_post(1)])
    with torch.no_grad():
        torch.testing.assert_close(out, tiny_gemma.hf.model.norm(cache[sites.resid_post(1)]))


def test_forward_work_counts_linear_attention_and_unembedding_flops(tiny_gemma):
    limits = load_bench("limits")
    n_tokens, seq = 12, 6
    one = limits.forward_work(tiny_gemma, n_tokens, seq, n_blocks=1, logits=False)
    two = limits.forward_work(tiny_gemma, n_tokens, seq, n_blocks=2, logits=False)
    block = tiny_gemma.layers[0]
    linear = sum(m.weight.numel() for m in block.modules() if m.__class__.__name__ == "Linear")
    attn = block.self_attn.config.num_attention_heads * block.self_attn.head_dim
    assert one.flops == 2 * linear * n_tokens + 4 * attn * seq * n_tokens and two.flops == 2 * one.flops
    unembed = tiny_gemma.hf.get_output_embeddings().weight.numel()
    with_logits = limits.forward_work(tiny_gemma, n_tokens, seq, n_blocks=1, logits=True)
    assert with_logits.flops - one.flops == 2 * unembed * n_tokens
    peaks = {"card": "test", "flops": one.flops * 10.0, "bandwidth": one.weight_bytes * 100.0}  # FLOP-bound: 0.1 s
    assert abs(limits.roofline_tokens_per_s(one, n_tokens, peaks) - n_tokens / 0.1) < 1e-6
    assert limits.roofline_tokens_per_s(one, n_tokens, None) is None
