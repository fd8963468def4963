"""Sanity of a traced series' axis, from its loss matrix alone: a step-0 row that is not a freshly
initialized model (its mean loss should be near ln V), and checkpoints much worse than both
neighbours on nearly every token (out of order, or a wrong file under that label). Reads the loss
matrix; returns warnings for trace/meta.json and the report.
"""
from __future__ import annotations

import math
import sys

import numpy as np

FINAL_MARGIN_NATS = 0.5  # a step-0 mean within this of the final mean is not a fresh model
WORSE_MARGIN_NATS = 0.5  # out of order: mean loss this far above both neighbours ...
WORSE_SHARE = 0.9  # ... and worse than both on this share of tokens


def axis_warnings(loss: np.ndarray, labels: list[str], steps: list[int] | None, vocab_size: int | None) -> list[dict]:
    """[{"kind", "checkpoint", "message"}] for loss (n_ckpt, n_tok) in axis order (a memmap is read
    one row at a time, and three rows at once only where a mean already stands out)."""
    out = []
    means = np.array([float(np.mean(loss[k], dtype=np.float64)) for k in range(loss.shape[0])])
    if steps is not None and len(steps) > 1 and steps[0] == 0 and vocab_size:
        ln_v, first, final = math.log(vocab_size), float(means[0]), float(means[-1])
        if first - final < FINAL_MARGIN_NATS or first - final < ln_v - first:
            out.append({"kind": "step0_not_fresh", "checkpoint": labels[0],
                        "message": f"{labels[0]} (step 0) has mean loss {first:.3f} nats, closer to the final "
                                   f"{final:.3f} than to ln V = {ln_v:.3f} of a freshly initialized model: its weights "
                                   "are probably not step 0's (check for copies of later checkpoints)"})
    suspect = {0} if out else set()  # a neighbour already flagged says nothing about its neighbour
    for k in range(1, len(means)):
        nb = [j for j in (k - 1, k + 1) if j < len(means)]
        if suspect & set(nb):
            continue
        excess = means[k] - max(means[j] for j in nb)
        if excess <= WORSE_MARGIN_NATS:
            continue
        row = np.asarray(loss[k])
        share = float(np.mean(np.all([row > np.asarray(loss[j]) for j in nb], axis=0)))
        if share >= WORSE_SHARE:
            out.append({"kind": "out_of_order", "checkpoint": labels[k],
                        "message": f"{labels[k]} is {excess:.2f} nats worse than its neighbours "
                                   f"({', '.join(labels[j] for j in nb)}) and worse on {share:.0%} of tokens: "
                                   "out of order, or another checkpoint's weights under this label"})
            suspect.add(k)
    for w in out:
        print(f"tokenclock: warning: {w['message']}", file=sys.stderr)
    return out
