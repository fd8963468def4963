"""The explorer's questions about many tokens, answered from an opened run (data.RunData): a window
of the validation text and its colours, the filter table (paged, sorted) and the spectrum brush
(events whose learning time falls in a range), all from the in-memory index (data.py, index.py);
only the rows on screen leave here. Censored events (midpoint outside the checkpoints) are left out
unless a request asks for them, and then come after the measured ones. Every query parameter is
checked here: a non-number, NaN, inf, a negative count or a reversed range is a 400 naming the fix.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Mapping

import numpy as np

from tokenclock.explore.data import ExploreError, RunData
from tokenclock.explore.index import FitIndex

WINDOW_MAX = 4096
PAGE_MAX = 500
COLOURS = ("learning_time", "class", "final_loss", "total_drop", "n_events")
SORTS = ("tok_idx", "learning_time", "a", "r2", "final_loss", "total_drop", "count", "n_events")

def need_fit(d: RunData, what: str) -> FitIndex:
    if d.fit is None:
        raise ExploreError(f"{what} needs the fit of run {d.name}", f"run `tokenclock fit {d.run.root}`",
                           status=409)
    return d.fit


def _span(d: RunData, start: int, n: int) -> tuple[int, int]:
    """The window of n tokens from `start`; a start past the run moves back to the last full window."""
    if n < 1 or n > WINDOW_MAX:
        raise ExploreError(f"window size {n} is not in 1..{WINDOW_MAX}", f"pass n between 1 and {WINDOW_MAX}")
    if start < 0:
        raise ExploreError(f"start {start} is negative", f"pass a token index in 0..{d.n_tok - 1}")
    start = min(start, max(0, d.n_tok - n))
    return start, min(d.n_tok, start + n)


# ----------------------------------------------------------------------------- the text window


def window(d: RunData, start: int, n: int) -> dict:
    """Texts of tokens start..start+n and where each new validation sequence begins (a start past
    the run gives its last full window, and says it was clamped)."""
    asked = start
    start, stop = _span(d, start, n)
    seq = d.seq(slice(start, stop))
    texts = d.vocab_text[d.token_id[start:stop]].tolist() if d.token_id is not None else None
    return {"start": start, "stop": stop, "clamped": start != asked, "texts": texts, "first_sequence": int(seq[0]),
            "breaks": (np.flatnonzero(np.diff(seq) != 0) + 1 + start).tolist()}


def colours(d: RunData, by: str, start: int, n: int, censored: bool = False) -> np.ndarray:
    """float32 (stop - start,) value of `by` per token (NaN: none); learning time in ln x of the
    token's largest measured learning event, -inf / +inf where that event (or, without a measured
    one, its only learning event) is censored before the first / after the last checkpoint;
    `censored` picks the largest learning event of all, censored or not."""
    if by not in COLOURS:
        raise ExploreError(f"unknown colour {by!r}", f"choose one of: {', '.join(COLOURS)}")
    start, stop = _span(d, start, n)
    if by == "final_loss":
        return d.final(slice(start, stop))
    if by == "total_drop":
        return d.drop(slice(start, stop))
    fi = need_fit(d, f"colouring by {by.replace('_', ' ')}")
    if by == "learning_time":
        v = fi.main_event(censored)[0][start:stop].copy()
        side = fi.censored_side(slice(start, stop), censored)
        if side is not None:
            v[side == 1], v[side == 2] = -np.inf, np.inf
        return v
    v = (fi.cls if by == "class" else fi.n_events)[start:stop].astype(np.float32)
    v[fi.cls[start:stop] < 0] = np.nan
    return v


def matching_ids(d: RunData, q: str, regex: bool) -> np.ndarray:
    """bool (V,): token ids whose text contains q (or matches the regex q)."""
    if d.vocab_text is None:
        raise ExploreError(f"run {d.name} has no token text (an imported loss matrix)",
                           "filter by class, learning time or r2 instead", status=409)
    if regex:
        try:
            pat = re.compile(q)
        except re.error as e:
            raise ExploreError(f"{q!r} is not a valid regular expression ({e})",
                               "escape special characters with a backslash, or untick regex") from None
        return np.fromiter((pat.search(t) is not None for t in d.vocab_text), bool, len(d.vocab_text))
    return np.fromiter((q in t for t in d.vocab_text), bool, len(d.vocab_text))


# ----------------------------------------------------------------------------- filters


def number(params: Mapping[str, str], key: str) -> float | None:
    """The finite number params[key] (None when absent or empty); NaN, inf and text are a 400."""
    v = params.get(key)
    if v is None or str(v).strip() == "":
        return None
    try:
        x = float(v)
    except ValueError:
        raise ExploreError(f"{key}={v!r} is not a number", f"pass a number, e.g. {key}=10") from None
    if not np.isfinite(x):
        raise ExploreError(f"{key}={v!r} is not a finite number", f"pass a finite number or leave {key} out")
    return x


def integer(params: Mapping[str, str], key: str, default: int, lo: int = 0, hi: int | None = None) -> int:
    v = number(params, key)
    if v is None:
        return default
    if v != int(v) or v < lo or (hi is not None and v > hi):
        span = f"in {lo}..{hi}" if hi is not None else f">= {lo}"
        raise ExploreError(f"{key}={params[key]!r} is not an integer {span}", f"pass an integer {span}")
    return int(v)


FLAGS = {"1": True, "true": True, "on": True, "0": False, "false": False, "off": False, "": False}


def flag(params: Mapping[str, str], key: str) -> bool:
    """A yes/no parameter: 1/true/on or 0/false/off (absent: no); anything else is a 400."""
    v = params.get(key)
    if v is None:
        return False
    if v.lower() not in FLAGS:
        raise ExploreError(f"{key}={v!r} is not a yes/no value", f"pass {key}=1 or {key}=0")
    return FLAGS[v.lower()]


def ordered(lo: float | None, hi: float | None, what: str) -> None:
    """A range given both ways round is a 400 that says so (the page swaps nothing silently)."""
    if lo is not None and hi is not None and lo > hi:
        raise ExploreError(f"{what}_min {lo:g} is above {what}_max {hi:g} (a reversed range)",
                           f"swap them: {what}_min={hi:g}&{what}_max={lo:g}")


@dataclass
class Filter:
    """The filter form: classes, token text (substring or regex), training-count range, learning-time
    range (axis units, e.g. steps) and r2 range; None is no bound."""

    classes: list[str] | None = None
    q: str = ""
    regex: bool = False
    count_min: float | None = None
    count_max: float | None = None
    x_min: float | None = None
    x_max: float | None = None
    r2_min: float | None = None
    r2_max: float | None = None
    censored: bool = False  # learning times and amplitudes of censored events count too

    @classmethod
    def parse(cls, p: Mapping[str, str]) -> "Filter":
        classes = [c for c in (p.get("class") or "").split(",") if c]
        f = cls(classes or None, p.get("q") or "", flag(p, "regex"),
                *(number(p, k) for k in ("count_min", "count_max", "x_min", "x_max", "r2_min", "r2_max")),
                censored=flag(p, "censored"))
        for what in ("count", "x", "r2"):
            ordered(getattr(f, f"{what}_min"), getattr(f, f"{what}_max"), what)
        for key in ("count_min", "count_max"):
            if (v := getattr(f, key)) is not None and v < 0:
                raise ExploreError(f"{key} {v:g} is negative (a training-set count is >= 0)",
                                   f"pass {key} >= 0 or leave it out")
        return f


def _between(v: np.ndarray, lo, hi) -> np.ndarray:
    m = np.ones(len(v), bool)
    if lo is not None:
        m &= v >= lo
    if hi is not None:
        m &= v <= hi
    return m


def _log(x: float | None, what: str) -> float | None:
    if x is None:
        return None
    if x <= 0:
        raise ExploreError(f"{what} {x:g} is not > 0 (learning times are on a log axis)", f"pass {what} > 0")
    return float(np.log(x))


def mask(d: RunData, f: Filter) -> np.ndarray:
    """bool (N,) of the tokens the filter keeps."""
    keep = np.ones(d.n_tok, bool)
    if f.q or f.count_min is not None or f.count_max is not None:
        if d.token_id is None:
            raise ExploreError(f"run {d.name} has no token ids or text (an imported loss matrix)",
                               "filter by class, learning time or r2 instead", status=409)
        ok = matching_ids(d, f.q, f.regex) if f.q else np.ones(len(d.vocab_text), bool)
        if f.count_min is not None or f.count_max is not None:
            if d.vocab_count is None:
                raise ExploreError(f"run {d.name} records no training-set counts (a series traced without "
                                   "its training data)", "leave count_min and count_max out", status=409)
            ok &= _between(d.vocab_count, f.count_min, f.count_max)
        keep &= ok[d.token_id]
    if f.classes or any(v is not None for v in (f.x_min, f.x_max, f.r2_min, f.r2_max)):
        fi = need_fit(d, "filtering by class, learning time or r2")
        if f.classes:
            unknown = [c for c in f.classes if c not in fi.classes]
            if unknown:
                raise ExploreError(f"unknown class {unknown[0]!r}", f"classes: {', '.join(fi.classes)}")
            lut = np.zeros(256, bool)  # a table lookup: np.isin over millions of int8 is ~10x slower
            lut[[fi.classes.index(c) for c in f.classes]] = True
            keep &= lut[fi.cls.view(np.uint8)]
        if f.x_min is not None or f.x_max is not None:
            keep &= _between(fi.main_event(f.censored)[0], _log(f.x_min, "x_min"), _log(f.x_max, "x_max"))
        if f.r2_min is not None or f.r2_max is not None:
            keep &= _between(fi.r2, f.r2_min, f.r2_max)
    return keep


def sort_key(d: RunData, sort: str, censored: bool = False) -> tuple[np.ndarray, np.ndarray | None]:
    """The key of `sort` per token (N,), and the tokens that go after the others whatever the order
    (those whose learning time or amplitude comes from a censored event; None: none)."""
    if sort in ("learning_time", "a"):
        fi = need_fit(d, f"sorting by {sort}")
        mu, a, side = fi.main_event(censored)
        return (mu if sort == "learning_time" else a), (None if side is None else side > 0)
    return _plain_key(d, sort), None


def _plain_key(d: RunData, sort: str) -> np.ndarray:
    if sort not in SORTS:
        raise ExploreError(f"unknown sort {sort!r}", f"choose one of: {', '.join(SORTS)}")
    if sort == "final_loss":
        return d.final()
    if sort == "total_drop":
        return d.drop()
    if sort == "count":
        if d.vocab_count is None:
            raise ExploreError(f"run {d.name} records no training-set counts", "sort by another column", status=409)
        return d.vocab_count[d.token_id]
    fi = need_fit(d, f"sorting by {sort}")
    return {"r2": fi.r2, "n_events": fi.n_events}[sort]


def top(key: np.ndarray, desc: bool, offset: int, limit: int) -> np.ndarray:
    """Positions of rows offset..offset+limit of `key` sorted (NaN last) without sorting it all."""
    k = np.where(np.isnan(key), np.inf, -key if desc else key) if key.dtype.kind == "f" else \
        (-key.astype(np.int64) if desc else key)
    stop = min(len(k), offset + limit)
    if stop <= offset:
        return np.zeros(0, np.int64)
    part = np.argpartition(k, stop - 1)[:stop] if stop < len(k) else np.arange(len(k))
    part = part[np.argsort(k[part], kind="stable")]
    return part[offset:stop]


def top_grouped(key: np.ndarray, late: np.ndarray | None, desc: bool, offset: int, limit: int) -> np.ndarray:
    """Like top(), with the rows where `late` is true after all the others (measured events lead)."""
    if late is None or not late.any():
        return top(key, desc, offset, limit)
    first, second = np.flatnonzero(~late), np.flatnonzero(late)
    head = first[top(key[first], desc, offset, limit)]
    if len(head) >= limit:
        return head
    off2 = max(0, offset - len(first))
    return np.r_[head, second[top(key[second], desc, off2, limit - len(head))]]


def past_the_end(offset: int, total: int) -> None:
    if offset and offset >= total:
        raise ExploreError(f"offset {offset:,} is past the last of {total:,} rows",
                           f"pass an offset below {total:,} (0 for the first page)")


def table(d: RunData, f: Filter, sort: str = "tok_idx", desc: bool = False, offset: int = 0,
          limit: int = 50) -> dict:
    """One page of the filtered tokens, sorted by `sort` (censored learning times last)."""
    cols = np.flatnonzero(mask(d, f))
    past_the_end(offset, len(cols))
    if sort == "tok_idx":
        page = (cols[::-1] if desc else cols)[offset:offset + limit]
    else:
        key, late = sort_key(d, sort, f.censored)
        page = cols[top_grouped(key[cols], None if late is None else late[cols], desc, offset, limit)]
    return {"total": int(len(cols)), "offset": offset, "rows": rows(d, page, f.censored)}


CONTEXT_TOKENS = 12


def contexts(d: RunData, cols: np.ndarray) -> list[str | None]:
    """The text before each token in its sequence (up to CONTEXT_TOKENS tokens' token_text, the last
    48 characters), from the token ids in memory: a list row costs no parquet read. The token panel
    shows trace/tokens.parquet's own context column."""
    if d.token_id is None or not len(cols):
        return [None] * len(cols)
    cols = np.asarray(cols, dtype=np.int64)
    before = cols[:, None] - np.arange(CONTEXT_TOKENS, 0, -1)[None, :]  # (rows, CONTEXT_TOKENS)
    inside = (before >= 0) & (d.seq(np.clip(before, 0, None).ravel()).reshape(before.shape) ==
                              d.seq(cols)[:, None])
    texts = d.vocab_text[d.token_id[np.clip(before, 0, None)]]
    return ["".join(t[m])[-48:] for t, m in zip(texts, inside)]


SIDES = ("", "left", "right")


def rows(d: RunData, cols: np.ndarray, censored: bool = False) -> list[dict]:
    """The table's fields for tokens `cols` (columns of loss.npy); learning time and a of each
    token's largest measured learning event (of all its learning events with `censored`, then
    `censored` says which side of the checkpoints that event lies)."""
    cols = np.asarray(cols, dtype=np.int64)
    out = {"i": cols.tolist(), "tok_idx": d.tok_idx_of(cols).tolist(), "sequence": d.seq(cols).tolist(),
           "final_loss": d.final(cols).tolist(), "total_drop": d.drop(cols).tolist(),
           "context": contexts(d, cols)}
    if d.token_id is not None:
        ids = d.token_id[cols]
        out["text"] = d.vocab_text[ids].tolist()
        out["count"] = d.vocab_count[ids].tolist() if d.vocab_count is not None else [None] * len(cols)
    if d.fit is not None:
        fi = d.fit
        out["class"] = [fi.classes[c] if c >= 0 else None for c in fi.cls[cols]]
        out["model"] = [fi.models[c] if c >= 0 else None for c in fi.model[cols]]
        mu, a, _ = fi.main_event(censored)
        side = fi.censored_side(cols, censored)
        out.update(r2=fi.r2[cols].tolist(), n_events=fi.n_events[cols].tolist(),
                   learning_time=np.exp(mu[cols].astype(np.float64)).tolist(), a=a[cols].tolist(),
                   censored=[SIDES[k] for k in side] if side is not None else [""] * len(cols))
    return [dict(zip(out, vals)) for vals in zip(*out.values())]


# ----------------------------------------------------------------------------- the spectrum brush


def brushed(d: RunData, x_min: float, x_max: float, sign: str = "learn", censored: bool = False):
    """The events with learning time in [x_min, x_max] (axis units) and sign `sign`: (s, keep, a,
    late, n_censored): positions s + keep in fi.by_mu (keep None: all of s..e), their amplitudes,
    which of them are censored (None: none), and how many censored ones were left out."""
    fi = need_fit(d, "the spectrum brush")
    if x_min is None or x_max is None:
        raise ExploreError("the brush needs x_min and x_max", "pass both, in axis units (e.g. steps)")
    lo, hi = _log(x_min, "x_min"), _log(x_max, "x_max")
    ordered(x_min, x_max, "x")
    if sign not in ("learn", "rise", "all"):
        raise ExploreError(f"unknown sign {sign!r}", "choose learn (a > 0), rise (a < 0) or all")
    s, e = fi.mu_span(lo, hi)
    a = fi.a_by_mu[s:e]  # (events in range,) contiguous: in order of mu
    ok = None if sign == "all" else (a > 0 if sign == "learn" else a < 0)
    late, left_out = None, 0
    if fi.cens_by_mu is not None:
        c = fi.cens_by_mu[s:e] > 0
        if censored:
            late = c
        else:
            left_out = int((c if ok is None else c & ok).sum())
            ok = ~c if ok is None else ok & ~c
    keep = None if ok is None else np.flatnonzero(ok)
    if keep is not None:
        a = a[keep]
        late = None if late is None else late[keep]
    return s, keep, a, late, left_out


def brush(d: RunData, x_min: float, x_max: float, sign: str = "learn", sort: str = "a",
          offset: int = 0, limit: int = 50, censored: bool = False) -> dict:
    """Events with learning time in [x_min, x_max] (axis units): one page, sorted by amplitude
    (`a` largest first, `-a` smallest first, `abs` largest |a|) or by learning time (`mu`).
    Censored events are left out (and counted), or with `censored` listed after the measured ones."""
    if sort not in ("a", "-a", "abs", "mu"):
        raise ExploreError(f"unknown sort {sort!r}", "choose a, -a, abs or mu")
    fi = need_fit(d, "the spectrum brush")
    s, keep, a, late, left_out = brushed(d, x_min, x_max, sign, censored)
    past_the_end(offset, len(a))
    if sort == "mu":
        order = np.arange(len(a)) if late is None else np.r_[np.flatnonzero(~late), np.flatnonzero(late)]
        pick = order[offset:offset + limit]
    else:
        pick = top_grouped(np.abs(a) if sort == "abs" else a, late, sort != "-a", offset, limit)
    ev = fi.by_mu[s + (pick if keep is None else keep[pick])]  # event rows (token order)
    mu, col = fi.ev_mu[ev], fi.token_of(ev)
    out = rows(d, col, censored)
    side = fi.ev_cens[ev] if fi.ev_cens is not None else np.zeros(len(ev), np.int8)
    for r, ai, mi, si in zip(out, a[pick].tolist(), mu.tolist(), side.tolist()):
        r.update(event_a=ai, event_mu=mi, event_x=float(np.exp(mi)), event_censored=SIDES[si])
    n_cens = 0 if late is None else int(late.sum())
    return {"total": int(len(a)), "censored": n_cens, "censored_left_out": left_out,
            "sum_a": float(a.sum(dtype=np.float64)),
            "share_of_spectrum": float(a.sum(dtype=np.float64) / max(1, d.n_tok)), "offset": offset,
            "rows": out}
