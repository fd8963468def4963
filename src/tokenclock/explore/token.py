"""One token of an opened run: its rows of trace/tokens.parquet, fit/tokens.parquet and
fit/events.parquet (DuckDB lookups by tok_idx), its trajectory from the memory-mapped
trace/loss.npy with the fitted curve of tokenclock.curves as float32 bytes, and the check that
runs share their validation tokens before their trajectories are overlaid.
"""
from __future__ import annotations

import math

import numpy as np

from tokenclock.curves import curve
from tokenclock.explore.data import ExploreError, RunData, parquet_file
from tokenclock.explore.db import duck

CACHE_TOKENS = 256


def plain(v):
    """A JSON-able value: numpy scalars to Python, NaN and inf to None."""
    if isinstance(v, dict):
        return {k: plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [plain(x) for x in v]
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def _rows(path, tok: int) -> list[dict]:
    """The rows of a parquet table whose tok_idx is `tok`."""
    if "tok_idx" not in parquet_file(path).schema_arrow.names:
        return []
    cur = duck().execute("SELECT * FROM read_parquet(?) WHERE tok_idx = ?", [str(path), tok])
    names = [c[0] for c in cur.description]
    return [dict(zip(names, r)) for r in cur.fetchall()]


def lookup(d: RunData, i: int) -> dict:
    """{trace: row, fit: row or None, events: [rows sorted by mu]} of column i (cached)."""
    i = d.check_col(i)
    cache = d.cache
    if i in cache:
        return cache[i]
    tok = int(d.tok_idx_of(i))
    trace = _rows(d.run.trace_tokens, tok)
    out = {"trace": trace[0] if trace else {"tok_idx": tok}, "fit": None, "events": []}
    if d.fit is not None:
        fit = _rows(d.run.fit_tokens, tok)
        out["fit"] = fit[0] if fit else None
        out["events"] = sorted(_rows(d.run.fit_events, tok), key=lambda e: e.get("mu", 0))
    if len(cache) >= CACHE_TOKENS:
        cache.clear()
    cache[i] = out
    return out


def detail(d: RunData, i: int) -> dict:
    """Everything the token panel shows about column i."""
    got = lookup(d, i)
    tr, fit = dict(got["trace"]), got["fit"]
    count = None
    if d.token_id is not None and d.vocab_count is not None:
        count = d.vocab_count[d.token_id[i]]
    out = {"i": i, "tok_idx": tr.get("tok_idx"), "sequence": tr.get("sequence"), "position": tr.get("position"),
           "token_id": tr.get("token_id"), "text": tr.get("token_text"), "context": tr.get("context"),
           "train_count": count, "unigram_loss": tr.get("unigram_loss"), "final_loss": d.final[i],
           "total_drop": d.drop[i], "fit": fit, "events": []}
    if out["text"] is None and d.vocab_text is not None and d.token_id is not None:
        out["text"] = d.vocab_text[d.token_id[i]]
    for e in got["events"]:
        out["events"].append({**e, "x_mid": math.exp(e["mu"]) if e.get("mu") is not None else None})
    return plain(out)


def fitted(d: RunData, i: int) -> np.ndarray:
    """(FIT_POINTS,) the fitted curve l(u) = b + c (u - u_end) + sum a s((mu - u) / w) at x_fit; NaN
    without a fit row."""
    got = lookup(d, i)
    xf = d.x_fit
    fit = got["fit"]
    if fit is None or fit.get("b") is None or not len(xf):
        return np.full(len(xf), np.nan, np.float32)
    ev = got["events"]
    a, mu, w = ([e[k] for e in ev] for k in ("a", "mu", "width"))
    u_end = float(np.log(d.x[d.keep][-1]))
    return curve(np.log(xf), fit["b"], a, mu, w, float(fit.get("c") or 0.0), u_end).astype(np.float32)


def trajectory(d: RunData, i: int) -> bytes:
    """Little-endian float32: the loss at each of the K checkpoints, then the fitted curve at x_fit."""
    i = d.check_col(i)
    loss = np.asarray(d.loss[:, i], dtype="<f4")  # (K,): one strided read of the memmap
    return np.concatenate([loss, fitted(d, i).astype("<f4")]).tobytes()


def mismatch(a: RunData, b: RunData) -> str | None:
    """Why runs a and b cannot be compared token by token (None: they share validation tokens)."""
    if a.signature == b.signature:
        return None
    if a.n_tok != b.n_tok:
        why = f"{a.n_tok:,} vs {b.n_tok:,} tokens"
    elif (a.token_id is None) != (b.token_id is None):
        why = f"{(a if a.token_id is None else b).name} has no token ids"
    elif a.token_id is not None and not np.array_equal(a.token_id, b.token_id):
        why = f"different token ids from token {int(np.argmax(a.token_id != b.token_id))} on"
    else:
        why = "different sequences"
    return f"runs {a.name} and {b.name} do not share their validation tokens ({why})"


def compare(runs: list[RunData], which: list[int], i: int) -> dict:
    """The runs (indices into `runs`) whose trajectories of column i can be overlaid, and on what x."""
    if len(which) < 2:
        raise ExploreError("compare needs two or more runs", "pass runs=0,1")
    for r in which:
        if not 0 <= r < len(runs):
            raise ExploreError(f"run {r} does not exist ({len(runs)} runs open)", status=404)
    for r in which[1:]:
        why = mismatch(runs[which[0]], runs[r])
        if why:
            raise ExploreError(why, "compare runs traced on the same validation tokens", status=409)
    runs[which[0]].check_col(i)
    axes = {runs[r].axis for r in which}
    return {"runs": which, "i": i, "x": "shared" if len(axes) == 1 else "normalized",
            "axes": [runs[r].axis for r in which]}
