"""What the tracker needs of the user's model: the assumed forward (logits from input_ids),
unwrapping DDP and torch.compile, a fingerprint that refuses another model on resume, its vocabulary
size and its context length. torch is imported inside the functions.
"""
from __future__ import annotations

import hashlib
from typing import Callable

from tokenclock.errors import ConfigError


def default_forward(model, input_ids):
    """Logits (batch, seq_len, vocab) of a model called as model(input_ids): a transformers model's
    output.logits, a tuple's first element, or the tensor itself."""
    out = model(input_ids)
    if hasattr(out, "logits"):
        return out.logits
    if isinstance(out, (tuple, list)):
        return out[0]
    return out


class Logits:
    """Calls a user's forward as forward.token_losses calls a model: model(input_ids=x).logits."""

    def __init__(self, model, forward: Callable):
        self.model, self.forward = model, forward

    def __call__(self, input_ids):
        from types import SimpleNamespace

        logits = self.forward(self.model, input_ids)
        if logits.dim() != 3 or logits.shape[:2] != input_ids.shape:
            raise ConfigError(f"the model's forward gave logits of shape {tuple(logits.shape)} for input "
                              f"{tuple(input_ids.shape)}; the tracker needs (batch, seq_len, vocab)",
                              "pass forward=lambda model, input_ids: <logits of every position>")
        return SimpleNamespace(logits=logits)


def unwrap(model):
    """The module inside DDP (.module) and torch.compile (._orig_mod) wrappers."""
    while True:
        inner = getattr(model, "module", None) or getattr(model, "_orig_mod", None)
        if inner is None or inner is model:
            return model
        model = inner


def model_fingerprint(model) -> dict:
    """What identifies a model across a restart (not its weights, which train): its class, its
    parameter count and the names and shapes of its parameters."""
    shapes = [f"{n}:{tuple(p.shape)}" for n, p in unwrap(model).named_parameters()]
    return {"class": type(unwrap(model)).__name__,
            "n_params": int(sum(p.numel() for p in unwrap(model).parameters())),
            "shapes_sha256": hashlib.sha256("\n".join(shapes).encode()).hexdigest()[:16]}


def model_configs(model):
    """Where a model's sizes are written: the configs of it and its submodules (a LightningModule
    holding a transformers model), then the modules themselves (nanoGPT's block_size)."""
    mods = list(unwrap(model).modules())
    return [m.config for m in mods if getattr(m, "config", None) is not None] + mods


def vocab_size_of(model, forward, device) -> int:
    """Rows of the output layer: a config's vocab_size, an output embedding, or one probe forward."""
    import torch

    m = unwrap(model)
    for holder in model_configs(m)[:1]:
        v = getattr(holder, "vocab_size", None)
        if isinstance(v, int) and v > 0:
            return v
    emb = m.get_output_embeddings() if hasattr(m, "get_output_embeddings") else None
    if emb is not None and hasattr(emb, "out_features"):
        return int(emb.out_features)
    with torch.no_grad():
        return int(forward(m, torch.zeros((1, 2), dtype=torch.long, device=device)).shape[-1])


def context_of(model) -> int | None:
    """The longest input the model takes, where its config or module says (None: not said)."""
    for holder in model_configs(model):
        for key in ("max_position_embeddings", "n_positions", "block_size", "max_seq_len"):
            v = getattr(holder, key, None)
            if isinstance(v, int) and v > 0:
                return v
    return None
