"""Running a model forward on token windows, without autograd: the device and precision to run on,
and the next-token cross-entropy of every position (train's validation loss, the trace, a study's
final losses). torch is imported inside each function, so `import tokenclock` stays fast.
"""
from __future__ import annotations

from tokenclock.errors import ConfigError


def resolve_device(name: str) -> str:
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device '{name}' requested but CUDA is not available", "use --set train.device=cpu")
    return name


def trace_dtype(dtype: str, device: str):
    """The autocast dtype of a trace (None: fp32): auto is bf16 on CUDA with bf16 and fp32 on
    every CPU (a per-token loss keeps full precision where it costs little); bf16 forced on a CPU
    that emulates it is allowed, with a warning that gives the measured slowdown."""
    import torch

    from tokenclock import precision

    if dtype == "auto" and not device.startswith("cuda"):
        return None
    p = precision.choose(dtype, device)
    if p.emulated:
        precision.say("trace.dtype", p)
    return torch.bfloat16 if p.dtype == "bf16" else None


def token_losses(model, tokens, amp_dtype, device: str):
    """Per-position next-token cross-entropy (nats), (batch, seq_len), float32, no autograd."""
    import torch
    import torch.nn.functional as F

    tokens = tokens.to(device, non_blocking=True)
    with torch.no_grad(), torch.autocast(device.split(":")[0], dtype=amp_dtype or torch.float32,
                                         enabled=amp_dtype is not None):
        logits = model(input_ids=tokens[:, :-1]).logits
    return F.cross_entropy(logits.float().transpose(1, 2), tokens[:, 1:], reduction="none")


def quiet_transformers() -> None:
    """Per-checkpoint "Loading weights" / "Writing model shards" bars would bury our own progress."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
