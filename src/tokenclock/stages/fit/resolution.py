"""Resolved vs unresolved and measured vs censored events, and the width floor's numbers (pure
numpy, no I/O): an event is resolved when its width is at least the local checkpoint spacing at
its midpoint (curves.local_spacing), and censored when its midpoint lies outside the observed
checkpoints; the fitter puts these numbers into fit/summary.json (`width_floor`, `resolution`,
`censored`) and the `resolved` and `censored` columns into fit/events.parquet.

A width below the spacing is not identifiable (any step between two checkpoints looks alike), so
the unresolved share says how much of the learning is sharper than the series can see.
"""
from __future__ import annotations

import numpy as np

from tokenclock.curves import local_spacing, spacing_nodes, width_bounds, width_floor

QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)


def resolved(u: np.ndarray, mu: np.ndarray, width: np.ndarray) -> np.ndarray:
    """True where width >= the local checkpoint spacing at mu (NaN widths: False)."""
    return np.asarray(width, float) >= local_spacing(u, mu)


CENSORED = ("none", "left", "right")


def censored(u: np.ndarray, mu: np.ndarray, early_margin: float = 0.0,
             late_margin: float = 0.0) -> np.ndarray:
    """'left' where mu < u[0] + early_margin x span, 'right' where mu > u[-1] - late_margin x
    span, else 'none' (object array of str); the margins are the fit's early/late ones, so a
    token's class is early or late exactly when its dominant event is censored. A censored
    event's midpoint and amplitude are extrapolations, not measurements: about half or more of
    its change happened outside the checkpoints, and mu trades off against a there."""
    mu = np.asarray(mu, float)
    span = float(u[-1] - u[0])
    out = np.full(mu.shape, "none", dtype=object)
    out[mu < u[0] + early_margin * span] = "left"
    out[mu > u[-1] - late_margin * span] = "right"
    return out


def censored_summary(a: np.ndarray, cens: np.ndarray) -> dict:
    """Counts of left- and right-censored events and the share of events and of |a| they carry."""
    amp = np.abs(np.asarray(a, float))
    cens = np.asarray(cens, dtype=object)
    out = {f"n_{k}": int((cens == k).sum()) for k in CENSORED[1:]}
    out["n_measured"] = int((cens == "none").sum())
    out["event_share"] = float((cens != "none").mean()) if len(cens) else None
    out["amplitude_share"] = float(amp[cens != "none"].sum() / amp.sum()) if amp.sum() > 0 else None
    return out


def floor_at(u: np.ndarray, mu: np.ndarray, rule: str, w_min_spacing: float,
             w_min_frac: float) -> np.ndarray:
    """The fitter's smallest width at each mu under `rule` (spacing or span)."""
    if rule == "span":
        return np.full(np.shape(mu), width_bounds(u, w_min_frac)[0])
    return width_floor(u, mu, w_min_spacing)


def floor_summary(u: np.ndarray, mu: np.ndarray, width: np.ndarray, rule: str,
                  w_min_spacing: float, w_min_frac: float) -> dict:
    """Which floor rule and factor were used, the floor's range over the observed u, and the share
    of events whose width sits at the floor (within 1e-4 relative)."""
    gaps = spacing_nodes(u)[1]
    fl_obs = floor_at(u, np.asarray(u, float), rule, w_min_spacing, w_min_frac)
    at = np.asarray(width, float) <= floor_at(u, mu, rule, w_min_spacing, w_min_frac) * (1 + 1e-4)
    return {"rule": rule, "w_min_spacing": w_min_spacing if rule == "spacing" else None,
            "w_min_frac": w_min_frac if rule == "span" else None,
            "floor_min": float(fl_obs.min()), "floor_max": float(fl_obs.max()),
            "spacing_min": float(gaps.min()), "spacing_max": float(gaps.max()),
            "share_at_floor": float(at.mean()) if len(at) else None}


def _quantiles(v: np.ndarray) -> dict:
    """{"q05": ..., "q95": ...} of v at QUANTILES; {} when v is empty."""
    if not len(v):
        return {}
    return {f"q{round(100 * p):02d}": float(x) for p, x in zip(QUANTILES, np.quantile(v, QUANTILES))}


def _share(num: np.ndarray, den: np.ndarray) -> list:
    return [float(n / d) if d > 0 else None for n, d in zip(num, den)]


def resolution_summary(u: np.ndarray, a: np.ndarray, mu: np.ndarray, width: np.ndarray,
                       n_bins: int = 10) -> dict:
    """Share of events and of event amplitude (|a|) that are unresolved, overall and per ln-time
    bin (n_bins equal bins of mu over the observed u range; events with mu outside it count
    overall and in n_before / n_after), and width quantiles (ln units, and in units of the local
    spacing) of the resolved events."""
    u = np.asarray(u, float)
    a, mu, width = (np.asarray(v, float) for v in (a, mu, width))
    ok = np.isfinite(a) & np.isfinite(mu) & np.isfinite(width)
    a, mu, width = a[ok], mu[ok], width[ok]
    res = resolved(u, mu, width)
    amp = np.abs(a)
    edges = np.linspace(u[0], u[-1], n_bins + 1)
    inside = (mu >= u[0]) & (mu <= u[-1])
    b = np.clip(np.searchsorted(edges, mu[inside], side="right") - 1, 0, n_bins - 1)
    n = np.bincount(b, minlength=n_bins)
    n_un = np.bincount(b, weights=~res[inside], minlength=n_bins)
    amp_all = np.bincount(b, weights=amp[inside], minlength=n_bins)
    amp_un = np.bincount(b, weights=amp[inside] * ~res[inside], minlength=n_bins)
    ratio = width[res] / local_spacing(u, mu[res])
    return {
        "n_events": int(len(mu)), "n_unresolved": int((~res).sum()),
        "unresolved_event_share": float((~res).mean()) if len(mu) else None,
        "unresolved_amplitude_share": float(amp[~res].sum() / amp.sum()) if amp.sum() > 0 else None,
        "n_before": int((mu < u[0]).sum()), "n_after": int((mu > u[-1]).sum()),
        "bins": {"u_edges": edges.tolist(),
                 "spacing": local_spacing(u, (edges[1:] + edges[:-1]) / 2).tolist(),
                 "n_events": n.tolist(), "amplitude_nats": amp_all.tolist(),
                 "unresolved_event_share": _share(n_un, n),
                 "unresolved_amplitude_share": _share(amp_un, amp_all)},
        "resolved_width_quantiles": _quantiles(width[res]),
        "resolved_width_over_spacing_quantiles": _quantiles(ratio),
    }
