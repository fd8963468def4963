"""One token of an opened run: its fit and events from the in-memory index, the rest of its rows of
trace/tokens.parquet and fit/tokens.parquet (DuckDB lookups by tok_idx), its trajectory from
trace/loss.npy with the fitted curve of tokenclock.curves as float32 bytes, and the check that runs
share their validation tokens before their trajectories are overlaid.
"""
from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from tokenclock.curves import curve
from tokenclock.explore.data import ExploreError, RunData
from tokenclock.explore.db import duck, parquet_file

CACHE_TOKENS = 256
_POOL = ThreadPoolExecutor(max_workers=2, thread_name_prefix="tokenclock-explore-lookup")


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


TRACE_COLUMNS = ("tok_idx", "sequence", "position", "context", "unigram_loss")
FIT_EXTRA = ("bic_gap", "sse", "spread")  # fit/tokens.parquet columns not kept in memory


def _row(path, tok: int, wanted: tuple[str, ...]) -> dict:
    """Columns `wanted` (those the table has) of the row of a parquet table whose tok_idx is `tok`."""
    if not path.is_file():
        return {}
    names = parquet_file(path).schema_arrow.names
    cols = [c for c in wanted if c in names]
    if "tok_idx" not in names or not cols:
        return {}
    got = duck().execute(f"SELECT {', '.join(repr(c).replace(chr(39), chr(34)) for c in cols)} FROM read_parquet(?) "
                         "WHERE tok_idx = ? LIMIT 1", [str(path), tok]).fetchone()
    return dict(zip(cols, got)) if got else {}


def lookup(d: RunData, i: int) -> dict:
    """The rows of trace/tokens.parquet and fit/tokens.parquet (the columns not in memory) of column i,
    by two DuckDB lookups at once (cached for the last CACHE_TOKENS tokens)."""
    i = d.check_col(i)
    cache = d.cache.setdefault("tokens", {})
    if i not in cache:
        if len(cache) >= CACHE_TOKENS:
            cache.clear()
        tok = int(d.tok_idx_of(i))
        fit = _POOL.submit(_row, d.run.fit_tokens, tok, FIT_EXTRA) if d.fit is not None else None
        trace = _row(d.run.trace_tokens, tok, TRACE_COLUMNS)  # meanwhile: DuckDB releases the GIL
        cache[i] = {"trace": trace or {"tok_idx": tok}, "fit": fit.result() if fit else {}}
    return cache[i]


def _fit_of(d: RunData, i: int) -> dict | None:
    fi = d.fit
    if fi is None or fi.cls[i] < 0:
        return None
    return {"class": fi.classes[fi.cls[i]], "model": fi.models[fi.model[i]] if fi.model[i] >= 0 else None,
            "r2": fi.r2[i], "n_events": fi.n_events[i], "b": fi.b[i], "c": 0.0 if fi.c is None else fi.c[i]}


def detail(d: RunData, i: int) -> dict:
    """Everything the token panel shows about column i."""
    got = lookup(d, i)
    tr = got["trace"]
    fit = _fit_of(d, i)
    if fit is not None:
        fit.update(got["fit"])
    count = None
    if d.token_id is not None and d.vocab_count is not None:
        count = d.vocab_count[d.token_id[i]]
    text = d.vocab_text[d.token_id[i]] if d.token_id is not None else None
    out = {"i": i, "tok_idx": tr.get("tok_idx"), "sequence": int(d.seq([i])[0]), "position": tr.get("position"),
           "token_id": None if d.token_id is None else d.token_id[i], "text": text, "context": tr.get("context"),
           "train_count": count, "unigram_loss": tr.get("unigram_loss"), "final_loss": d.final(i),
           "total_drop": d.drop(i), "fit": fit, "events": []}
    if d.fit is not None:
        ev = d.fit.events(i)
        for a, mu, w, res, cen in zip(*(ev[k].tolist() for k in ("a", "mu", "width", "resolved", "censored"))):
            out["events"].append({"a": a, "mu": mu, "width": w, "x_mid": math.exp(mu) if math.isfinite(mu) else None,
                                  "resolved": None if res < 0 else bool(res), "censored": ("", "left", "right")[cen]})
        out["events"].sort(key=lambda e: e["mu"] if e["mu"] is not None else 0.0)
    return plain(out)


def fitted(d: RunData, i: int) -> np.ndarray:
    """(FIT_POINTS,) the fitted curve l(u) = b + c (u - u_end) + sum a s((mu - u) / w) at x_fit, from
    the in-memory index; NaN without a fit row."""
    xf = d.x_fit
    fi = d.fit
    if fi is None or fi.cls[i] < 0 or not np.isfinite(fi.b[i]) or not len(xf):
        return np.full(len(xf), np.nan, np.float32)
    ev = fi.events(i)
    c = 0.0 if fi.c is None else float(fi.c[i])
    u_end = float(np.log(d.x[d.keep][-1]))
    return curve(np.log(xf), float(fi.b[i]), ev["a"], ev["mu"], ev["width"], c, u_end).astype(np.float32)


def trajectory(d: RunData, i: int) -> bytes:
    """Little-endian float32: the loss at each of the K checkpoints, then the fitted curve at x_fit."""
    i = d.check_col(i)
    loss = d.column(i).astype("<f4")  # (K,)
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
            raise ExploreError(f"run {r} does not exist ({len(runs)} runs open)",
                               f"pass run indices in 0..{len(runs) - 1}", status=404)
    for r in which[1:]:
        why = mismatch(runs[which[0]], runs[r])
        if why:
            raise ExploreError(why, "compare runs traced on the same validation tokens", status=409)
    runs[which[0]].check_col(i)
    axes = {runs[r].axis for r in which}
    return {"runs": which, "i": i, "x": "shared" if len(axes) == 1 else "normalized",
            "axes": [runs[r].axis for r in which]}
