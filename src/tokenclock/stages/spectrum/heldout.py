"""Out-of-sample checks of a reconstruction (numpy only, no files): the token split (events of a
random half of the tokens predict the other half's measured -dL/du) and held-out checkpoints in
blocks (the fit never sees a run of consecutive checkpoints, so the smoothing of the measured
derivative cannot carry the fitted neighbours into the score, as it can when every other checkpoint
is held out).

The fit is per token (no parameter is shared across tokens), so "fit on half A" is the same as
keeping the events of the tokens in A: no refit is needed for the token split.
"""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from tokenclock.scores import r2_score
from tokenclock.stages.spectrum.reconstruct import CHUNK_ELEMS, measured_derivative, reconstruct_derivative

SPLIT_SEED = 20240617  # which half of the tokens is A: fixed, so every run and series splits alike


def token_half(n_tok: int, seed: int = SPLIT_SEED) -> np.ndarray:
    """A boolean mask of n_tok // 2 tokens (half A), drawn by a seeded permutation."""
    mask = np.zeros(n_tok, bool)
    mask[np.random.default_rng(seed).permutation(n_tok)[: n_tok // 2]] = True
    return mask


def split_curves(loss_kn: np.ndarray, keep_mask: np.ndarray, half: np.ndarray,
                 chunk_columns: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The mean loss of half A and of half B at each kept checkpoint, streamed in column blocks."""
    rows = np.flatnonzero(np.asarray(keep_mask, bool))
    N = loss_kn.shape[1]
    step = chunk_columns or max(1, CHUNK_ELEMS // max(len(rows), 1))
    sa, sb = np.zeros(len(rows)), np.zeros(len(rows))
    for c0 in range(0, N, step):
        block = np.asarray(loss_kn[rows, c0:c0 + step], np.float64)
        h = half[c0:c0 + step]
        sa += block[:, h].sum(axis=1)
        sb += block[:, ~h].sum(axis=1)
    return sa / max(int(half.sum()), 1), sb / max(int((~half).sum()), 1)


def _events_of(events: Mapping[str, Any], half: np.ndarray) -> dict:
    sel = half[np.asarray(events["tok_idx"], np.int64)]
    return {k: np.asarray(events[k])[sel] for k in ("a", "mu", "width")}


def token_split_scores(loss_kn: np.ndarray, keep_mask: np.ndarray, u: np.ndarray, events: Mapping[str, Any],
                       after: np.ndarray, smoothing: int, heldout_events: Mapping[str, Any] | None = None,
                       heldout_rows: np.ndarray | None = None, chunk_columns: int | None = None) -> dict:
    """Events of half A reconstruct half B's measured -dL/du: R^2 overall and after warmup (and on
    held-out checkpoints, from the held-out fit's events of A), beside the split's own ceiling, the
    R^2 between A's and B's measured derivatives (noise that every token shares is invisible to it)."""
    half = token_half(loss_kn.shape[1])
    la, lb = split_curves(loss_kn, keep_mask, half, chunk_columns)
    ma, mb = measured_derivative(la, u, smoothing), measured_derivative(lb, u, smoothing)
    rec = reconstruct_derivative(_events_of(events, half), int(half.sum()), u)
    after = np.asarray(after, bool)
    s = {"token_split_r2": r2_score(rec, mb), "token_split_r2_after_warmup": r2_score(rec[after], mb[after]),
         "token_split_ceiling_r2": r2_score(ma, mb),
         "token_split_ceiling_r2_after_warmup": r2_score(ma[after], mb[after]),
         "token_split_n": [int(half.sum()), int((~half).sum())]}
    if heldout_events is not None and heldout_rows is not None:
        held = np.asarray(heldout_rows, bool)
        rec_h = reconstruct_derivative(_events_of(heldout_events, half), int(half.sum()), u)
        s["token_split_r2_heldout_after_warmup"] = r2_score(rec_h[held & after], mb[held & after])
    return s


def block_mask(n: int, size: int) -> np.ndarray:
    """Held-out rows in blocks: consecutive runs of `size` checkpoints, every other block held out,
    the first and the last block always fitted (a held-out end would be extrapolation)."""
    blocks = np.arange(n) // max(size, 1)
    last = blocks[-1] if n else 0
    return (blocks % 2 == 1) & (blocks != last)
