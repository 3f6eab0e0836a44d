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


def tiny_model(arch: str = "gemma3", seed: int = 0, n_layers: int = 3, device: str = "cpu") -> Model:
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
    hf.to(device).eval()
    return Model(hf, tokenizer, name=f"tiny-{arch}", revision=f"seed{seed}")
