"""Tiny random-weight models built from a config, for fast tests (no download, no GGUF)."""
from __future__ import annotations

import string

import torch

from metalens.model import Model

N_UNUSED = 32  # reserved tokens, like gemma's <unusedN>
SPECIALS = ["<pad>", "<eos>", "<bos>", "<unk>"]
CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}<eos>{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)


def tiny_tokenizer(chat: bool = False):
    """Character-level tokenizer: specials, `<unusedN>` tokens, then printable ASCII."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    extra = ["<|user|>", "<|assistant|>", "<|system|>"] if chat else []
    pieces = SPECIALS + [f"<unused{i}>" for i in range(N_UNUSED)] + extra + list(dict.fromkeys(string.printable))
    vocab = {p: i for i, p in enumerate(pieces)}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    tok.decoder = decoders.Fuse()
    tok.post_processor = processors.TemplateProcessing(
        single="<bos> $A", pair="<bos> $A $B", special_tokens=[("<bos>", vocab["<bos>"])]
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<bos>", eos_token="<eos>", pad_token="<pad>",
        unk_token="<unk>", additional_special_tokens=[f"<unused{i}>" for i in range(N_UNUSED)] + extra,
    )
    # TransformerLens reloads a tokenizer by name unless it already says it adds BOS.
    tokenizer.init_kwargs.update(name_or_path="metalens-tiny", add_bos_token=True)
    if chat:
        tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def tiny_model(arch: str = "gemma3", seed: int = 0, n_layers: int = 3, device: str = "cpu",
               dtype: torch.dtype | None = None) -> Model:
    """A random-weight `Model` (d_model 64, 4 heads) of the given architecture: gemma3 or llama.

    The llama variant has a chat template, like an instruct model.
    """
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig, LlamaConfig, LlamaForCausalLM

    tokenizer = tiny_tokenizer(chat=arch == "llama")
    common = dict(
        vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=n_layers,
        num_attention_heads=4, head_dim=16, max_position_embeddings=512, tie_word_embeddings=True,
        pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id, attn_implementation="eager",
    )
    torch.manual_seed(seed)
    if arch == "gemma3":
        config = Gemma3TextConfig(num_key_value_heads=1, query_pre_attn_scalar=16, sliding_window=64, **common)
        hf = Gemma3ForCausalLM(config)
    elif arch == "llama":
        hf = LlamaForCausalLM(LlamaConfig(num_key_value_heads=2, **common))
    else:
        raise ValueError(f"Unknown tiny architecture '{arch}': use 'gemma3' or 'llama'.")
    hf.config.architectures = [type(hf).__name__]
    hf.to(device=device, dtype=dtype).eval()  # weights drawn on the CPU: the same seed gives the same model anywhere
    return Model(hf, tokenizer, name=f"tiny-{arch}", revision=f"seed{seed}")


# Real architectures' shapes, for speed and device checks where weights cannot travel (random weights cost
# exactly what trained ones cost). gemma-3-270m: its own config (as converted from the embedded GGUF);
# llama-1b: Llama-3.2-1B's shape; llama-8b: Llama-3.1-8B's (16 GB in bfloat16: for one 80 GB GPU, not the CPU).
RANDOM_CONFIGS = {
    "gemma-3-270m": dict(
        arch="gemma3", vocab_size=262144, hidden_size=640, intermediate_size=2048, num_hidden_layers=18,
        num_attention_heads=4, num_key_value_heads=1, head_dim=256, query_pre_attn_scalar=256, sliding_window=512,
        layer_types=["full_attention" if (i + 1) % 6 == 0 else "sliding_attention" for i in range(18)],
        rope_parameters={"full_attention": {"rope_theta": 1e6, "rope_type": "default"},
                         "sliding_attention": {"rope_theta": 1e4, "rope_type": "default"}},
        hidden_activation="gelu_pytorch_tanh", rms_norm_eps=1e-6, max_position_embeddings=32768,
        tie_word_embeddings=True),
    "llama-1b": dict(
        arch="llama", vocab_size=128256, hidden_size=2048, intermediate_size=8192, num_hidden_layers=16,
        num_attention_heads=32, num_key_value_heads=8, head_dim=64, rms_norm_eps=1e-5, max_position_embeddings=8192,
        rope_theta=500000.0, tie_word_embeddings=True),
    "llama-8b": dict(
        arch="llama", vocab_size=128256, hidden_size=4096, intermediate_size=14336, num_hidden_layers=32,
        num_attention_heads=32, num_key_value_heads=8, head_dim=128, rms_norm_eps=1e-5, max_position_embeddings=8192,
        rope_theta=500000.0, tie_word_embeddings=False),
}
DRAW_IN_FLOAT32_MAX = 8 * 2**30  # bytes: larger models are drawn in their target dtype (no float32 copy beside it)


def _n_params(shape: dict) -> int:
    """Parameters of a RANDOM_CONFIGS shape (norms left out)."""
    d, layers, vocab = shape["hidden_size"], shape["num_hidden_layers"], shape["vocab_size"]
    head, q, kv = shape["head_dim"], shape["num_attention_heads"], shape["num_key_value_heads"]
    block = d * head * (2 * q + 2 * kv) + 3 * d * shape["intermediate_size"]
    return layers * block + vocab * d * (1 if shape.get("tie_word_embeddings") else 2)


def random_model(name: str, device: str = "cpu", dtype: torch.dtype | None = None, seed: int = 0) -> Model:
    """A random-weight `Model` with a real model's shape (`RANDOM_CONFIGS`: gemma-3-270m, llama-1b, llama-8b).

    The tokenizer is the tiny character one (with `<unusedN>` tokens for reserved heads); the
    vocabulary rows past it exist, as in the real model, but no text maps to them. Weights are
    drawn on `device` (fast on a GPU); dtype defaults to bfloat16 on CUDA, float32 elsewhere.
    """
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig, LlamaConfig, LlamaForCausalLM

    if name not in RANDOM_CONFIGS:
        raise ValueError(f"Unknown random config '{name}': use one of {sorted(RANDOM_CONFIGS)}.")
    shape = dict(RANDOM_CONFIGS[name])
    arch = shape.pop("arch")
    tokenizer = tiny_tokenizer(chat=arch == "llama")
    ids = dict(pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
               eos_token_id=tokenizer.eos_token_id, attn_implementation="eager")
    config = (Gemma3TextConfig if arch == "gemma3" else LlamaConfig)(**shape, **ids)
    dtype = dtype or (torch.bfloat16 if str(device).startswith("cuda") else torch.float32)
    torch.manual_seed(seed)
    draw = torch.float32 if 4 * _n_params(shape) <= DRAW_IN_FLOAT32_MAX else dtype
    previous = torch.get_default_dtype()
    try:
        torch.set_default_dtype(draw)
        with torch.device(device):
            hf = (Gemma3ForCausalLM if arch == "gemma3" else LlamaForCausalLM)(config)
    finally:
        torch.set_default_dtype(previous)
    hf.config.architectures = [type(hf).__name__]
    hf.to(dtype=dtype).eval()
    return Model(hf, tokenizer, name=f"random-{name}", revision=f"seed{seed}")
