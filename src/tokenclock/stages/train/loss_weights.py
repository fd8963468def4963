"""Per-token loss weights of a reshaped run (SCHEDULE/weights.npy, written by the reshape stage's
token-learnable strategy): one update's weights for this rank, scaled so the global batch's weights
average 1 (the weighted loss keeps the lr scale), and the summary the train stage records. Reads
nothing itself; torch is imported inside step_weights.
"""
from __future__ import annotations

import numpy as np


def step_weights(token_weights: np.ndarray | None, step: int, rank: int, world: int):
    """This rank's (batch / world, seq_len) torch weights of update `step`, or None without
    weights. A batch whose weights are all zero trains on uniform weights (weights_summary counts
    it)."""
    import torch

    if token_weights is None:
        return None
    w = np.asarray(token_weights[step], dtype=np.float32)  # (batch_size, seq_len), global
    tot = float(w.sum(dtype=np.float64))
    w = w * np.float32(w.size / tot) if tot > 0 else np.ones_like(w)
    return torch.from_numpy(np.ascontiguousarray(w[rank::world]))


def weights_summary(token_weights: np.ndarray | None, steps: int) -> dict:
    """{"token_weights": {zero_weight_batches, mean}} for a run with per-token loss weights (else
    {}: summaries of runs without them are as before)."""
    if token_weights is None:
        return {}
    tot = np.concatenate([np.asarray(token_weights[s:s + 256], dtype=np.float32).sum(axis=(1, 2))
                          for s in range(0, steps, 256)])
    return {"token_weights": {"zero_weight_batches": int((tot <= 0).sum()),
                              "mean": float(tot.sum() / (steps * token_weights[0].size))}}
