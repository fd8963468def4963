"""The model: a Llama-style decoder (RMSNorm, RoPE, SwiGLU, no biases) with named size presets.

tokenclock uses `transformers`' own LlamaForCausalLM, so every checkpoint opens with
`AutoModelForCausalLM.from_pretrained(step_dir)` and gives the same logits (measured on this CPU:
as fast as a hand-written model, within noise).
"""
from __future__ import annotations

from dataclasses import dataclass

from tokenclock.errors import ConfigError

# name: (hidden, layers, heads, kv_heads, intermediate). Non-embedding parameter counts are
# computed by `non_embedding_params` and listed in the README (`tokenclock presets`). llama-170k,
# -280k, -700k, -1.2m and -1.9m sit between the others so that 100k, 170k, 280k, 500k, 700k, 1.2m,
# 1.9m and 4m are spaced evenly in ln(params) (ratio 1.55-1.67: study-cpu's M axis); llama-3.8m,
# -14m and -27m do the same for 1m, 1.9m, 3.8m, 8m, 14m, 27m, 50m, 100m (ratio 1.86-1.99: study-gpu).
PRESETS: dict[str, tuple[int, int, int, int, int]] = {
    "llama-100k": (64, 2, 4, 4, 192),
    "llama-170k": (64, 3, 4, 4, 224),
    "llama-250k": (80, 3, 4, 4, 224),
    "llama-280k": (88, 3, 4, 4, 232),
    "llama-500k": (96, 4, 4, 4, 256),
    "llama-700k": (112, 4, 4, 4, 384),
    "llama-1m": (128, 4, 4, 4, 480),
    "llama-1.2m": (128, 5, 4, 4, 448),
    "llama-2m": (160, 5, 5, 5, 512),
    "llama-1.9m": (160, 5, 5, 5, 576),
    "llama-4m": (192, 6, 6, 6, 640),
    "llama-3.8m": (224, 6, 4, 4, 640),
    "llama-8m": (256, 8, 8, 8, 864),
    "llama-14m": (320, 10, 5, 5, 1024),
    "llama-20m": (384, 11, 6, 6, 1024),
    "llama-27m": (448, 11, 7, 7, 1216),
    "llama-50m": (512, 14, 8, 8, 1792),
    "llama-100m": (768, 14, 12, 12, 2048),
    "llama-300m": (1024, 24, 16, 16, 2816),
    "llama-1b": (2048, 16, 32, 8, 8192),
}


@dataclass
class ModelConfig:
    """Model shape. `preset` picks a named size; the shape fields left None take the preset's value
    (0, the spelling of older configs, means the same); the manifest records the resolved shape."""

    preset: str = "llama-1m"
    """A name from PRESETS (`tokenclock presets` lists them with their parameter counts)."""
    hidden_size: int | None = None
    """Width of the residual stream; None = the preset's."""
    num_layers: int | None = None
    """Decoder layers; None = the preset's."""
    num_heads: int | None = None
    """Attention heads; None = the preset's."""
    num_kv_heads: int | None = None
    """Key/value heads (grouped-query attention); None = the preset's, or num_heads when
    num_heads is set to something other than the preset's."""
    intermediate_size: int | None = None
    """Width of the SwiGLU MLP; None = the preset's."""
    max_seq_len: int = 1024
    """RoPE positions the model supports (train.seq_len must not exceed it)."""
    rope_theta: float = 10000.0
    """RoPE base frequency."""
    tie_embeddings: bool = True
    """Share the input embedding with the output head (small models would otherwise spend most
    of their parameters on embeddings)."""
    init_std: float = 0.02
    """Standard deviation of the initial weights."""

    def __post_init__(self) -> None:
        if self.preset not in PRESETS:
            import difflib

            close = difflib.get_close_matches(self.preset, list(PRESETS), n=1)
            raise ConfigError(f"unknown model preset '{self.preset}'",
                              f"did you mean '{close[0]}'?" if close
                              else f"choose one of {', '.join(PRESETS)}")
        h, n_layer, n_head, n_kv, inter = PRESETS[self.preset]
        # None or 0: the preset's value
        self.hidden_size = self.hidden_size or h
        self.num_layers = self.num_layers or n_layer
        self.num_heads = self.num_heads or n_head
        self.num_kv_heads = self.num_kv_heads or (n_kv if self.num_heads == n_head else self.num_heads)
        self.intermediate_size = self.intermediate_size or inter
        if self.hidden_size % self.num_heads:
            raise ConfigError(f"model.hidden_size {self.hidden_size} is not divisible by "
                              f"model.num_heads {self.num_heads}")
        if self.num_heads % self.num_kv_heads:
            raise ConfigError(f"model.num_heads {self.num_heads} is not a multiple of "
                              f"model.num_kv_heads {self.num_kv_heads}")
        if (self.hidden_size // self.num_heads) % 2:
            raise ConfigError("model head size must be even for RoPE",
                              "pick hidden_size / num_heads even")


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
