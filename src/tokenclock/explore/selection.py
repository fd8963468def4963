"""The curves of a selection: the tokens the filter keeps, or those of the brushed events, drawn as
trajectories (up to MAX_DRAWN of them) with their fitted curves, and the whole selection as a mean
and a 10-90% band per checkpoint, beside the same band of the run's other weight series (raw and
averaged) on the same tokens. Reads a random sample (seed 0: the same selection gives the same
numbers) of at most READS losses from trace/loss.npy, so a selection of millions answers as fast as
a token click; the answer says how many tokens the band is made of.
"""
from __future__ import annotations

import json
import struct
import warnings

import numpy as np

from tokenclock.curves import event
from tokenclock.explore.data import ExploreError, RunData
from tokenclock.explore.queries import Filter, brushed, flag, mask, need_fit, number

MAX_DRAWN = 200
READS = 40_000      # losses read per request (sampled tokens x checkpoints x series): ~75 ms of os.pread
MIN_SAMPLE = 200    # tokens in the band's sample however many checkpoints there are
QUANTILES = (0.1, 0.5, 0.9)
EVENT_SAMPLE = 20_000  # a brush of more events takes its tokens from this many of them


def selected(d: RunData, params) -> tuple[np.ndarray, dict]:
    """Columns of the selection `of` (filter or brush, from the same parameters as /tokens and
    /events) and a description of it; a brush of many events samples events before tokens."""
    of = params.get("of", "filter")
    if of == "filter":
        cols = np.flatnonzero(mask(d, Filter.parse(params)))
        return cols, {"of": "filter", "n_tokens": int(len(cols))}
    if of != "brush":
        raise ExploreError(f"unknown selection {of!r}", "pass of=filter or of=brush")
    fi = need_fit(d, "the curves of a brush")
    s, keep, a, _, left_out = brushed(d, number(params, "x_min"), number(params, "x_max"),
                                      params.get("sign", "learn"), flag(params, "censored"))
    pos = np.arange(s, s + len(a)) if keep is None else s + keep
    n_events = len(pos)
    if n_events > EVENT_SAMPLE:  # many events: their tokens from a sample of them
        pos = np.unique(pos[np.random.default_rng(0).integers(0, n_events, EVENT_SAMPLE)])
    cols = np.unique(fi.token_of(fi.by_mu[pos]))
    return cols, {"of": "brush", "n_events": n_events, "censored_left_out": left_out,
                  "n_tokens": int(len(cols)) if len(pos) == n_events else None}


def _some(cols: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """k of cols (sorted) picked at random without replacement, in time independent of len(cols)."""
    got = np.unique(cols[rng.integers(0, len(cols), 2 * k)])  # a few repeats among 2k draws
    return np.sort(rng.permutation(got)[:k]) if len(got) >= k else np.sort(rng.choice(cols, k, replace=False))


def _fitted(d: RunData, cols: np.ndarray) -> np.ndarray:
    """float32 (len(cols), F) fitted curves at x_fit, NaN for a token without a fit."""
    xf = d.x_fit
    fi = d.fit
    out = np.full((len(cols), len(xf)), np.nan, np.float32)
    if fi is None or not len(cols) or not len(xf):
        return out
    u = np.log(xf)
    ok = (fi.cls[cols] >= 0) & np.isfinite(fi.b[cols])
    rows, c = np.flatnonzero(ok), cols[ok]
    val = np.repeat(fi.b[c].astype(np.float64)[:, None], len(u), axis=1)
    if fi.c is not None:
        val += fi.c[c].astype(np.float64)[:, None] * (u - np.log(d.x[d.keep][-1]))[None, :]
    starts, stops = fi.ev_start[c], fi.ev_start[c + 1]
    n_ev = (stops - starts).astype(np.int64)
    ev = np.repeat(starts - np.r_[0, np.cumsum(n_ev)[:-1]], n_ev) + np.arange(n_ev.sum())  # event rows
    owner = np.repeat(np.arange(len(c)), n_ev)
    if len(ev):
        np.add.at(val, owner, event(u[None, :], fi.ev_a[ev][:, None], fi.ev_mu[ev][:, None], fi.ev_w[ev][:, None]))
    out[rows] = val
    return out


def _band(loss: np.ndarray) -> list[np.ndarray]:
    """mean and QUANTILES over tokens, per checkpoint, of loss (K, S)."""
    if not loss.shape[1]:
        return [np.full(loss.shape[0], np.nan, np.float32) for _ in range(1 + len(QUANTILES))]
    if not np.isnan(loss).any():  # the usual case: np.quantile is several times faster than nanquantile
        return [loss.mean(axis=1), *np.quantile(loss, QUANTILES, axis=1)]
    with warnings.catch_warnings():  # a checkpoint where every sampled loss is NaN: NaN, said by the page
        warnings.simplefilter("ignore", RuntimeWarning)
        return [np.nanmean(loss, axis=1), *np.nanquantile(loss, QUANTILES, axis=1)]


def curves(runs: list[RunData], r: int, params) -> bytes:
    """The answer of /curves: a little-endian uint32 n, n bytes of JSON (what follows and the counts),
    padding to 4 bytes, then float32 blocks in the order the JSON lists them."""
    d = runs[r]
    cols, what = selected(d, params)
    others = [k for k, o in enumerate(runs) if k != r and o.run.root == d.run.root and o.signature == d.signature]
    per_token = d.n_ckpt + sum(runs[k].n_ckpt for k in others)
    n_sample = max(MIN_SAMPLE, READS // max(1, per_token))
    rng = np.random.default_rng(0)
    sample = cols if len(cols) <= n_sample else _some(cols, n_sample, rng)
    drawn = sample if len(sample) <= MAX_DRAWN else _some(sample, MAX_DRAWN, rng)
    loss = d.gather(sample)  # (K, S)
    where = np.searchsorted(sample, drawn)
    fit_all = _fitted(d, sample)  # (S, F)
    blocks = [("loss", loss[:, where].T), ("fit", fit_all[where])]
    names = ("mean", *(f"q{round(q * 100)}" for q in QUANTILES))
    blocks += list(zip(names, _band(loss)))
    with warnings.catch_warnings():  # tokens without a fit: NaN curves
        warnings.simplefilter("ignore", RuntimeWarning)
        blocks.append(("fit_mean", np.nanmean(fit_all, axis=0) if len(sample) else np.full(len(d.x_fit), np.nan)))
    series = []
    for k in others:
        o = runs[k]
        series.append({"run": k, "name": o.name, "series": o.series})
        blocks += [(f"{k}:{n}", v) for n, v in zip(names, _band(o.gather(sample)))]
    meta = {**what, "n_sample": int(len(sample)), "n_drawn": int(len(drawn)), "drawn": drawn.tolist(),
            "series": series, "quantiles": list(QUANTILES),
            "blocks": [[name, *np.atleast_2d(v).shape] for name, v in blocks]}
    head = json.dumps(meta).encode()
    head += b" " * (-(len(head) + 4) % 4)
    body = b"".join(np.ascontiguousarray(v, dtype="<f4").tobytes() for _, v in blocks)
    return struct.pack("<I", len(head)) + head + body
