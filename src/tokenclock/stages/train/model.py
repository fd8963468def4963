"""The model: a Llama-style decoder (RMSNorm, RoPE, SwiGLU, no biases) built from ModelConfig (its
size presets: config.py).

tokenclock uses `transformers`' own LlamaForCausalLM, so every checkpoint opens with
`AutoModelForCausalLM.from_pretrained(step_dir)` and gives the same logits (measured on this CPU:
as fast as a hand-written model, within noise).
"""
from __future__ import annotations

from tokenclock.stages.train.config import ModelConfig


def hf_config(cfg: ModelConfig, vocab_size: int, bos_id: int | None = None, eos_id: int | None = None):
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=cfg.hidden_size,
        intermediate_size=cfg.intermediate_size,
        num_hidden_layers=cfg.num_layers,
        num_attention_heads=cfg.num_heads,
        num_key_value_heads=cfg.num_kv_heads,
        max_position_embeddings=cfg.max_seq_len,
        rope_theta=cfg.rope_theta,
        rms_norm_eps=1e-5,
        hidden_act="silu",
        attention_bias=False,
        mlp_bias=False,
        tie_word_embeddings=cfg.tie_embeddings,
        initializer_range=cfg.init_std,
        bos_token_id=bos_id,
        eos_token_id=eos_id,
        pad_token_id=eos_id,
    )


def build_model(cfg: ModelConfig, vocab_size: int, seed: int, eos_id: int | None = None):
    """A freshly initialised LlamaForCausalLM; the same seed gives the same weights."""
    import torch
    from transformers import LlamaForCausalLM

    hf = hf_config(cfg, vocab_size, eos_id=eos_id, bos_id=eos_id)
    hf._attn_implementation = "sdpa"
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LlamaForCausalLM(hf)
    return model


def non_embedding_params(model) -> int:
    """Parameters outside the token embedding and the output head (the scaling-law convention)."""
    skip = set()
    for mod in (model.get_input_embeddings(), model.get_output_embeddings()):
        if mod is not None:
            skip.update(id(p) for p in mod.parameters())
    seen, total = set(), 0
    for p in model.parameters():
        if id(p) in skip or id(p) in seen:
            continue
        seen.add(id(p))
        total += p.numel()
    return total


def preset_params(name: str) -> int:
    """Non-embedding parameters of a preset, computed from its shape (no model built)."""
    cfg = ModelConfig(preset=name)
    h, hd = cfg.hidden_size, cfg.hidden_size // cfg.num_heads
    attn = h * h * 2 + 2 * h * cfg.num_kv_heads * hd
    mlp = 3 * h * cfg.intermediate_size
    return cfg.num_layers * (attn + mlp + 2 * h) + h
