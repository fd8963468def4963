"""Model FLOPs and MFU: the training FLOPs of a Llama-style model per token and the peak bf16
throughput of common accelerators, for the trainer's summary and the throughput benchmark.

MFU counts the FLOPs the model needs (not recomputation), as in PaLM (Chowdhery et al. 2022, app. B):
6 per parameter that multiplies activations (every non-embedding weight and the output head; the
input embedding is a lookup) plus 12 * layers * hidden * seq_len for attention scores and values.
"""
from __future__ import annotations

# dense bf16 tensor-core peak, FLOP/s, by a substring of torch.cuda.get_device_name()
PEAK_BF16: list[tuple[str, float]] = [
    ("H200", 989e12), ("H100 PCIe", 756e12), ("H100", 989e12), ("H800", 989e12), ("GH200", 989e12),
    ("B200", 2250e12), ("A100", 312e12), ("A800", 312e12), ("A10G", 125e12), ("A10", 125e12),
    ("L40S", 362e12), ("L40", 181e12), ("L4", 121e12), ("RTX 4090", 165e12), ("RTX 3090", 71e12),
    ("V100", 125e12), ("MI300X", 1307e12), ("MI250X", 383e12),
]


def flops_per_token(n_params: int, vocab_size: int, hidden: int, layers: int, seq_len: int) -> float:
    """Training FLOPs per token (forward + backward) of a decoder with `n_params` non-embedding
    parameters, an output head of vocab_size x hidden, and causal attention over seq_len."""
    return 6.0 * (n_params + vocab_size * hidden) + 12.0 * layers * hidden * seq_len


def peak_flops(device: str) -> float | None:
    """Dense bf16 peak FLOP/s of a CUDA device, or None when unknown (or not a GPU)."""
    if not device.startswith("cuda"):
        return None
    import torch

    name = torch.cuda.get_device_name(device)
    for key, peak in PEAK_BF16:
        if key in name:
            return peak
    return None
