"""The explorer's in-memory index of one run's fit, built once from fit/tokens.parquet and
fit/events.parquet read in batches: compact per-token arrays (N,) for colours, filters and the fitted
curve, and every event in token order with a permutation by learning time for the spectrum brush
(21 bytes per event and 22 per token).
"""
from __future__ import annotations

import bisect
from dataclasses import dataclass
from typing import Callable

import numpy as np

from tokenclock.explore.db import batches, parquet_file
from tokenclock.rundir import RunDir
from tokenclock.stages.fit.models import CLASSES


@dataclass
class FitIndex:
    """Per-token fit results (N,) and every event (M,), grouped by token."""

    axis: str
    classes: list[str]
    cls: np.ndarray          # int8 (N,): index into classes, -1 for a token without a fit row
    models: list[str]
    model: np.ndarray        # int8 (N,): index into models, -1 without a row
    r2: np.ndarray           # float32 (N,)
    n_events: np.ndarray     # int8 (N,)
    b: np.ndarray            # float32 (N,): final level of the fitted curve
    c: np.ndarray | None     # float32 (N,): slope of a linear model (None: every token's is 0)
    mu: np.ndarray           # float32 (N,): midpoint of the token's largest learning event (a > 0), NaN if none
    a: np.ndarray            # float32 (N,): that event's drop in nats
    ev_start: np.ndarray     # int32 (N + 1,): events of token i are ev_*[ev_start[i]:ev_start[i + 1]]
    ev_a: np.ndarray         # float32 (M,)
    ev_mu: np.ndarray        # float32 (M,)
    ev_w: np.ndarray         # float32 (M,)
    ev_resolved: np.ndarray  # int8 (M,): 1 resolved, 0 not, -1 unknown (no such column)
    by_mu: np.ndarray        # int32 (M',): events with a finite midpoint, in order of mu
    a_by_mu: np.ndarray      # float32 (M',): ev_a[by_mu], so a brushed range of mu is one slice

    def events(self, i: int) -> dict[str, np.ndarray]:
        s, e = int(self.ev_start[i]), int(self.ev_start[i + 1])
        return {"a": self.ev_a[s:e], "mu": self.ev_mu[s:e], "width": self.ev_w[s:e],
                "resolved": self.ev_resolved[s:e]}

    def token_of(self, rows: np.ndarray) -> np.ndarray:
        """The token (column) of each event row."""
        return np.searchsorted(self.ev_start, rows, side="right") - 1

    def mu_span(self, lo: float, hi: float) -> tuple[int, int]:
        """Positions s, e in by_mu of the events with lo <= mu <= hi (a binary search through by_mu:
        numpy's searchsorted with a sorter first checks the whole sorter, ~0.1 s at 17M events)."""
        key = self.ev_mu.__getitem__
        return (bisect.bisect_left(self.by_mu, np.float32(lo), key=key),
                bisect.bisect_right(self.by_mu, np.float32(hi), key=key))


def _codes(values, names: list[str]) -> np.ndarray:
    """int8 index of each string of a pyarrow array in `names` (extended with new names)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    for v in pc.unique(values).to_pylist():
        if v is not None and v not in names:
            names.append(v)
    idx = pc.index_in(values, value_set=pa.array(names, pa.string()))
    return idx.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int8)


def fit_index(run: RunDir, axis: str, n: int, cols_of: Callable[[np.ndarray], np.ndarray]) -> FitIndex:
    """Read RUN/fit/{tokens,events}.parquet into a FitIndex; cols_of maps tok_idx to columns of loss.npy."""
    f32 = lambda: np.full(n, np.nan, np.float32)  # noqa: E731
    fi = FitIndex(axis=axis, classes=list(CLASSES), cls=np.full(n, -1, np.int8), models=[],
                  model=np.full(n, -1, np.int8), r2=f32(), n_events=np.zeros(n, np.int8), b=f32(), c=None,
                  mu=f32(), a=f32(), ev_start=np.zeros(n + 1, np.int32), ev_a=np.zeros(0, np.float32),
                  ev_mu=np.zeros(0, np.float32), ev_w=np.zeros(0, np.float32), ev_resolved=np.zeros(0, np.int8),
                  by_mu=np.zeros(0, np.int32), a_by_mu=np.zeros(0, np.float32))
    names = set(parquet_file(run.fit_tokens).schema_arrow.names)
    for _, b in batches(run.fit_tokens, [c for c in ("tok_idx", "class", "model", "r2", "n_events", "b", "c")
                                         if c in names]):
        cols = cols_of(b.column("tok_idx").to_numpy())
        ok = cols >= 0
        if "class" in names:
            fi.cls[cols[ok]] = _codes(b.column("class"), fi.classes)[ok]
        if "model" in names:
            fi.model[cols[ok]] = _codes(b.column("model"), fi.models)[ok]
        for c in ("r2", "n_events", "b"):
            if c in names:
                getattr(fi, c)[cols[ok]] = b.column(c).to_numpy(zero_copy_only=False)[ok]
        if "c" in names:
            c = b.column("c").to_numpy(zero_copy_only=False)[ok]
            if np.any(c != 0):
                fi.c = f32() if fi.c is None else fi.c
                fi.c[cols[ok]] = c
    _events(run, fi, n, cols_of)
    return fi


def _events(run: RunDir, fi: FitIndex, n: int, cols_of) -> None:
    """fi.ev_* grouped by token, fi.by_mu, and fi.mu / fi.a (each token's largest learning event)."""
    pf = parquet_file(run.fit_events)
    m, names = pf.metadata.num_rows, set(pf.schema_arrow.names)
    col = np.empty(m, np.int32)
    a, mu, w = (np.empty(m, np.float32) for _ in range(3))
    res = np.full(m, -1, np.int8)
    for s, b in batches(run.fit_events, [c for c in ("tok_idx", "a", "mu", "width", "resolved") if c in names]):
        e = s + b.num_rows
        col[s:e] = cols_of(b.column("tok_idx").to_numpy())
        for arr, name in ((a, "a"), (mu, "mu"), (w, "width")):
            arr[s:e] = b.column(name).to_numpy(zero_copy_only=False) if name in names else np.nan
        if "resolved" in names:
            res[s:e] = b.column("resolved").to_numpy(zero_copy_only=False)
        _largest_learning(fi, col[s:e], a[s:e], mu[s:e])
    if len(col) and not (col[1:] >= col[:-1]).all():  # events not grouped by token: group them
        order = np.argsort(col, kind="stable")
        col, a, mu, w, res = col[order], a[order], mu[order], w[order], res[order]
    keep = col >= 0
    if not keep.all():
        col, a, mu, w, res = col[keep], a[keep], mu[keep], w[keep], res[keep]
    if len(col) >= 2**31:
        fi.ev_start = fi.ev_start.astype(np.int64)
    np.cumsum(np.bincount(col, minlength=n), out=fi.ev_start[1:])
    fi.ev_a, fi.ev_mu, fi.ev_w, fi.ev_resolved = a, mu, w, res
    del col
    finite = np.isfinite(mu) & np.isfinite(a)
    if finite.all():  # the usual case: no index array of the finite rows needed
        fi.by_mu = np.argsort(mu, kind="stable").astype(np.int32)
    else:
        rows = np.flatnonzero(finite).astype(np.int32)
        fi.by_mu = rows[np.argsort(mu[rows], kind="stable")]
    fi.a_by_mu = a[fi.by_mu]


def _largest_learning(fi: FitIndex, t: np.ndarray, a: np.ndarray, mu: np.ndarray) -> None:
    pos = (a > 0) & (t >= 0) & np.isfinite(mu)
    t, a, mu = t[pos], a[pos], mu[pos]
    order = np.lexsort((a, t))  # largest a last within each token
    t, a, mu = t[order], a[order], mu[order]
    last = np.r_[t[1:] != t[:-1], True] if len(t) else np.zeros(0, bool)
    t, a, mu = t[last], a[last], mu[last]
    better = ~(fi.a[t] >= a)  # NaN (no event yet) counts as smaller
    fi.a[t[better]], fi.mu[t[better]] = a[better], mu[better]
