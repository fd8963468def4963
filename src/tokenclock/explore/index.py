"""The explorer's in-memory index of one run's fit, built once from fit/tokens.parquet and
fit/events.parquet read in batches: compact per-token arrays (N,) for colours, filters and the fitted
curve, and every event in token order with a permutation by learning time for the spectrum brush
(23 bytes per event and 22 per token, 8 more per token where some events are censored). An event is
censored where events.parquet's `censored` column says so ('left'/'right', or true); a fit without
that column has none.
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
    mu: np.ndarray           # float32 (N,): midpoint of the token's largest measured learning event (a > 0), NaN if none
    a: np.ndarray            # float32 (N,): that event's drop in nats
    ev_start: np.ndarray     # int32 (N + 1,): events of token i are ev_*[ev_start[i]:ev_start[i + 1]]
    ev_a: np.ndarray         # float32 (M,)
    ev_mu: np.ndarray        # float32 (M,)
    ev_w: np.ndarray         # float32 (M,)
    ev_resolved: np.ndarray  # int8 (M,): 1 resolved, 0 not, -1 unknown (no such column)
    by_mu: np.ndarray        # int32 (M',): events with a finite midpoint, in order of mu
    a_by_mu: np.ndarray      # float32 (M',): ev_a[by_mu], so a brushed range of mu is one slice
    ev_cens: np.ndarray | None = None      # int8 (M,): 0 measured, 1 left-, 2 right-censored (None: none censored)
    cens_by_mu: np.ndarray | None = None   # int8 (M',): ev_cens[by_mu]
    mu_all: np.ndarray | None = None       # float32 (N,): like mu over every learning event, censored ones too
    a_all: np.ndarray | None = None        # float32 (N,): that event's drop
    cens_all: np.ndarray | None = None     # int8 (N,): whether that event is censored (0, 1 left, 2 right)

    def main_event(self, censored: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """(mu, a, censored side) per token of its largest learning event: measured ones only, or
        censored ones too (`censored`; then the side is 0 for a measured event)."""
        if not censored or self.mu_all is None:
            return self.mu, self.a, None
        return self.mu_all, self.a_all, self.cens_all

    def censored_side(self, sel, censored: bool) -> np.ndarray | None:
        """int8 side (0 measured, 1 left, 2 right) of the learning event that gives tokens `sel` their
        learning time: their largest learning event (`censored`), or else their largest measured
        one, and the largest censored one only where a token has no measured one. None when no
        event is censored."""
        if self.cens_all is None:
            return None
        side = self.cens_all[sel]
        return side if censored else np.where(np.isnan(self.mu[sel]), side, 0).astype(np.int8)

    def events(self, i: int) -> dict[str, np.ndarray]:
        s, e = int(self.ev_start[i]), int(self.ev_start[i + 1])
        cens = self.ev_cens[s:e] if self.ev_cens is not None else np.zeros(e - s, np.int8)
        return {"a": self.ev_a[s:e], "mu": self.ev_mu[s:e], "width": self.ev_w[s:e],
                "resolved": self.ev_resolved[s:e], "censored": cens}

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
    cens = np.zeros(m, np.int8) if "censored" in names else None
    u_mid = _observed_middle(run)
    for s, b in batches(run.fit_events, [c for c in ("tok_idx", "a", "mu", "width", "resolved", "censored")
                                         if c in names]):
        e = s + b.num_rows
        col[s:e] = cols_of(b.column("tok_idx").to_numpy())
        for arr, name in ((a, "a"), (mu, "mu"), (w, "width")):
            arr[s:e] = b.column(name).to_numpy(zero_copy_only=False) if name in names else np.nan
        if "resolved" in names:
            res[s:e] = b.column("resolved").to_numpy(zero_copy_only=False)
        if cens is not None:
            cens[s:e] = censored_side(b.column("censored"), mu[s:e], u_mid)
        _largest_learning(fi, col[s:e], a[s:e], mu[s:e], None if cens is None else cens[s:e])
    if cens is not None and not cens.any():
        cens = None
    if len(col) and not (col[1:] >= col[:-1]).all():  # events not grouped by token: group them
        order = np.argsort(col, kind="stable")
        col, a, mu, w, res = col[order], a[order], mu[order], w[order], res[order]
        cens = None if cens is None else cens[order]
    keep = col >= 0
    if not keep.all():
        col, a, mu, w, res = col[keep], a[keep], mu[keep], w[keep], res[keep]
        cens = None if cens is None else cens[keep]
    if len(col) >= 2**31:
        fi.ev_start = fi.ev_start.astype(np.int64)
    np.cumsum(np.bincount(col, minlength=n), out=fi.ev_start[1:])
    fi.ev_a, fi.ev_mu, fi.ev_w, fi.ev_resolved, fi.ev_cens = a, mu, w, res, cens
    if cens is None:  # nothing censored: the per-token arrays over all events are the measured ones
        fi.mu_all = fi.a_all = fi.cens_all = None
    del col
    finite = np.isfinite(mu) & np.isfinite(a)
    if finite.all():  # the usual case: no index array of the finite rows needed
        fi.by_mu = np.argsort(mu, kind="stable").astype(np.int32)
    else:
        rows = np.flatnonzero(finite).astype(np.int32)
        fi.by_mu = rows[np.argsort(mu[rows], kind="stable")]
    fi.a_by_mu = a[fi.by_mu]
    fi.cens_by_mu = None if cens is None else cens[fi.by_mu]


def _observed_middle(run: RunDir) -> float | None:
    """ln x half-way through the fitted range (fit/summary.json's u_min, u_max): which side a
    censored event that says only `true` lies on."""
    from tokenclock.artifacts import read_json

    try:
        s = read_json(run.fit_summary) if run.fit_summary.is_file() else {}
        return (float(s["u_min"]) + float(s["u_max"])) / 2
    except Exception:  # no summary or no range in it: the side comes from the events' own median
        return None


def censored_side(values, mu: np.ndarray, u_mid: float | None) -> np.ndarray:
    """int8 side (0 measured, 1 left, 2 right) of each event from a pyarrow `censored` column:
    strings '' / 'left' / 'right', or booleans (the side from mu against the middle of the range)."""
    import pyarrow as pa

    if pa.types.is_boolean(values.type):
        flag = values.to_numpy(zero_copy_only=False).astype(bool) if values.null_count == 0 else \
            np.asarray(values.fill_null(False).to_numpy(zero_copy_only=False), bool)
        right = mu > (u_mid if u_mid is not None else np.nanmedian(mu) if len(mu) else 0)
        return np.where(flag, np.where(right, 2, 1), 0).astype(np.int8)
    txt = np.asarray(values.fill_null("").to_numpy(zero_copy_only=False), dtype=object)
    return np.select([txt == "left", txt == "right"], [1, 2], 0).astype(np.int8)


def _largest_learning(fi: FitIndex, t: np.ndarray, a: np.ndarray, mu: np.ndarray, cens: np.ndarray | None) -> None:
    """Each token's largest learning event: measured ones into fi.mu / fi.a; where some events are
    censored, over every event too into fi.mu_all / fi.a_all / fi.cens_all."""
    if cens is not None and fi.mu_all is None:
        n = len(fi.mu)
        fi.mu_all, fi.a_all = fi.mu.copy(), fi.a.copy()  # the measured ones so far: no event was censored
        fi.cens_all = np.zeros(n, np.int8)
    keep = (a > 0) & (t >= 0) & np.isfinite(mu)
    measured = keep if cens is None else keep & (cens == 0)
    _merge(t, a, mu, measured, fi.mu, fi.a, None, None)
    if fi.mu_all is not None:
        _merge(t, a, mu, keep, fi.mu_all, fi.a_all, fi.cens_all,
               np.zeros(len(t), np.int8) if cens is None else cens)


def _merge(t, a, mu, pos, mu_out, a_out, cens_out, cens) -> None:
    t, a, mu = t[pos], a[pos], mu[pos]
    c = None if cens is None else cens[pos]
    order = np.lexsort((a, t))  # largest a last within each token
    t, a, mu = t[order], a[order], mu[order]
    last = np.r_[t[1:] != t[:-1], True] if len(t) else np.zeros(0, bool)
    t, a, mu = t[last], a[last], mu[last]
    better = ~(a_out[t] >= a)  # NaN (no event yet) counts as smaller
    a_out[t[better]], mu_out[t[better]] = a[better], mu[better]
    if cens_out is not None:
        cens_out[t[better]] = c[order][last][better]
