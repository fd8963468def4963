"""What each view of the page reads (artifact file and columns, named by RunDir), a description of
one artifact for the page's links (size, shape or schema), the spectrum tables, and downloads of the
current selection as CSV or parquet (DuckDB writes them into a new temporary folder, never the run).
"""
from __future__ import annotations

import re
import tempfile
from pathlib import Path

import numpy as np

from tokenclock.artifacts import read_json, read_parquet
from tokenclock.explore.data import ExploreError, RunData
from tokenclock.explore.db import duck, parquet_file
from tokenclock.explore.queries import Filter, flag, mask, need_fit, number, ordered

SUMMARY_KEYS = ("n_events", "reconstruction_r2", "reconstruction_r2_heldout", "reconstruction_r2_after_warmup",
                "event_share", "alpha_measured", "alpha_spectrum", "bandwidth", "axis")
HIST_BINS = 80


def rel(d: RunData, path: Path) -> str:
    return path.relative_to(d.run.root).as_posix()


def artifacts(d: RunData) -> dict[str, Path]:
    """The files the explorer may read, by path relative to the run (those that exist)."""
    r = d.run
    paths = [r.trace_loss, r.trace_axis, r.trace_tokens, r.trace_meta, r.fit_tokens, r.fit_events, r.fit_summary,
             r.spectrum_density(), r.spectrum_curve(), r.spectrum_summary, r.token_counts]
    return {rel(d, p): p for p in paths if p.is_file()}


def sources(d: RunData) -> dict[str, list[dict]]:
    """view -> [{file, columns}] it reads."""
    r = d.run

    def src(path: Path, *columns: str) -> dict:
        return {"file": rel(d, path), "columns": list(columns), "exists": path.is_file()}

    tokens = src(r.trace_tokens, "tok_idx", "sequence", "token_id", "token_text (also the contexts of list rows)",
                 "train_count")
    token_row = src(r.trace_tokens, "context", "position", "unigram_loss")
    loss_rows = src(r.trace_loss, "rows 0 and K-1 (final loss, total drop)")
    per_token = src(r.fit_tokens, "tok_idx", "class", "model", "r2", "n_events")
    main_event = src(r.fit_events, "tok_idx", "a", "mu (largest a > 0 per token)", "censored")
    return {
        "text": [tokens, loss_rows, per_token, main_event],
        "token": [src(r.trace_loss, "column tok_idx (all K rows)"), src(r.trace_axis, d.axis),
                  src(r.fit_tokens, "b", "c", "n_events", "r2", "class", "model", "bic_gap", "sse"),
                  src(r.fit_events, "tok_idx", "a", "mu", "width", "resolved"), token_row, tokens],
        "spectrum": [src(r.spectrum_density(), "x", "rho_learn", "rho_rise"),
                     src(r.spectrum_curve(), "x", "dldu_measured", "dldu_reconstructed"),
                     src(r.spectrum_summary, *SUMMARY_KEYS[:4]), src(r.fit_events, "tok_idx", "a", "mu")],
        "table": [per_token, main_event, tokens, loss_rows],
        "curves": [src(r.trace_loss, "the selection's columns (a sample of at most 40,000 losses)"),
                   src(r.fit_tokens, "b", "c", "class"), src(r.fit_events, "tok_idx", "a", "mu", "width", "censored"),
                   per_token, tokens],
    }


def describe(d: RunData, path: str) -> dict:
    """Size and shape (npy), schema and rows (parquet) or keys (json) of one artifact."""
    files = artifacts(d)
    if path not in files:
        raise ExploreError(f"{path!r} is not an artifact of run {d.name}", f"one of: {', '.join(files)}",
                           status=404)
    p = files[path]
    out = {"file": path, "path": str(p), "bytes": p.stat().st_size}
    if p.suffix == ".npy":
        arr = np.load(p, mmap_mode="r")
        out.update(kind="npy", shape=list(arr.shape), dtype=str(arr.dtype))
    elif p.suffix == ".parquet":
        pf = parquet_file(p)
        out.update(kind="parquet", rows=pf.metadata.num_rows, row_groups=pf.metadata.num_row_groups,
                   columns=[{"name": f.name, "type": str(f.type)} for f in pf.schema_arrow])
    else:
        doc = read_json(p)
        out.update(kind="json", keys=sorted(doc), values={k: _short(v) for k, v in sorted(doc.items())})
    return out


def _short(v, items: int = 12):
    """A JSON value for the page's dialog: long lists cut to their first `items` (and how many more)."""
    if isinstance(v, list) and len(v) > items:
        return [_short(x) for x in v[:items]] + [f"... {len(v) - items:,} more"]
    if isinstance(v, dict):
        return {k: _short(x) for k, x in list(v.items())[:items * 4]}
    return v


# ----------------------------------------------------------------------------- spectrum


def spectrum(d: RunData) -> dict:
    """The learning-time density (x, rho_learn, rho_rise) and measured vs reconstructed -dL/du; a
    histogram of the events when the spectrum stage has not run."""
    fi = need_fit(d, "the spectrum")
    if "spectrum" in d.cache:
        return d.cache["spectrum"]
    r = d.run
    if d.has_spectrum:
        dens = read_parquet(r.spectrum_density())
        curve = read_parquet(r.spectrum_curve())
        summary = read_json(r.spectrum_summary) if r.spectrum_summary.is_file() else {}
        out = {"source": "spectrum", "density": {k: dens[k].tolist() for k in ("x", "rho_learn", "rho_rise")
                                                 if k in dens},
               "curve": {k: curve[k].tolist() for k in ("x", "dldu_measured", "dldu_reconstructed") if k in curve},
               "summary": {k: summary.get(k) for k in SUMMARY_KEYS if k in summary}}
        if "rho_learn" not in out["density"] and "rho" in dens:
            out["density"]["rho_learn"] = dens["rho"].tolist()
    else:
        u = np.log(d.x[d.keep])
        mu, a = fi.ev_mu[fi.by_mu], fi.ev_a[fi.by_mu]  # finite events, in order of mu
        n_cens = 0
        if fi.cens_by_mu is not None:  # censored events have no measured learning time: left out, counted
            measured = fi.cens_by_mu == 0
            n_cens, mu, a = int((~measured).sum()), mu[measured], a[measured]
        edges = np.linspace(min(u[0], mu[0]) if len(mu) else u[0], max(u[-1], mu[-1]) if len(mu) else u[-1],
                            HIST_BINS + 1)
        width = np.diff(edges)
        learn = np.histogram(mu, edges, weights=np.maximum(a, 0))[0] / width / d.n_tok
        rise = np.histogram(mu, edges, weights=np.minimum(a, 0))[0] / width / d.n_tok
        out = {"source": "histogram", "density": {"x": np.exp((edges[1:] + edges[:-1]) / 2).tolist(),
                                                  "rho_learn": learn.tolist(), "rho_rise": rise.tolist()},
               "curve": None, "summary": {"n_events": int(len(mu)), "n_censored_left_out": n_cens}}
    from tokenclock.explore.token import plain

    d.cache["spectrum"] = out = plain(out)
    return out


# ----------------------------------------------------------------------------- downloads


def _lit(path: Path) -> str:
    return "'" + str(path).replace("'", "''") + "'"


def _selection(d: RunData, cols: np.ndarray):
    import pyarrow as pa

    table = {"tok_idx": d.tok_idx_of(cols).astype(np.int64), "final_loss": d.final(cols),
             "total_drop": d.drop(cols)}
    if d.fit is not None:
        table.update(learning_time=np.exp(d.fit.mu[cols].astype(np.float64)), learning_time_ln=d.fit.mu[cols],
                     main_event_a=d.fit.a[cols])
    return pa.table(table)


NAMED = ("class", "q", "regex", "count_min", "count_max", "x_min", "x_max", "r2_min", "r2_max", "sign",
         "censored")


def download_name(d: RunData, what: str, params) -> str:
    """The file name of a download, without suffix: run, what, then the selection
    (`tiny_tokens_class-learned_q-the_x_min-5`), safe for any file system, at most 120 characters."""
    safe = lambda s: re.sub(r"[^\w.-]+", "_", str(s)).strip("_")  # noqa: E731
    parts = [safe(d.name) or "run", what]
    parts += [f"{k}-{safe(params[k]) or 'x'}" for k in NAMED if params.get(k) not in (None, "", "0")]
    return "_".join(parts)[:120].rstrip("_.-")


def download(d: RunData, what: str, fmt: str, params) -> Path:
    """A file with the current selection: `tokens` (the filter's rows of trace/tokens.parquet and
    fit/tokens.parquet) or `events` (the brush's rows of fit/events.parquet, censored events only
    with censored=1), as csv or parquet, named for the selection (download_name)."""
    if fmt not in ("csv", "parquet"):
        raise ExploreError(f"unknown format {fmt!r}", "choose csv or parquet")
    r = d.run
    out = Path(tempfile.mkdtemp(prefix="tokenclock-explore-")) / f"{download_name(d, what, params)}.{fmt}"
    con = duck()
    if what == "tokens":
        cols = np.flatnonzero(mask(d, Filter.parse(params)))
        con.register("sel", _selection(d, cols))
        fit = r.fit_tokens.is_file() and "tok_idx" in parquet_file(r.fit_tokens).schema_arrow.names
        query = (f"SELECT sel.*, t.* EXCLUDE (tok_idx){', f.* EXCLUDE (tok_idx)' if fit else ''} FROM sel "
                 f"JOIN read_parquet({_lit(r.trace_tokens)}) t ON t.tok_idx = sel.tok_idx "
                 + (f"LEFT JOIN read_parquet({_lit(r.fit_tokens)}) f ON f.tok_idx = sel.tok_idx " if fit else "")
                 + "ORDER BY sel.tok_idx")
    elif what == "events":
        need_fit(d, "downloading events")
        lo, hi = (number(params, k) for k in ("x_min", "x_max"))
        if lo is None or hi is None or lo <= 0 or hi <= 0:
            raise ExploreError("the events download needs x_min and x_max > 0 (the brushed range)",
                               "brush a range of the spectrum, or pass both in axis units")
        ordered(lo, hi, "x")
        if params.get("sign", "learn") not in ("learn", "rise", "all"):
            raise ExploreError(f"unknown sign {params['sign']!r}", "choose learn (a > 0), rise (a < 0) or all")
        sign = {"learn": "AND e.a > 0", "rise": "AND e.a < 0"}.get(params.get("sign", "learn"), "")
        if "censored" in parquet_file(r.fit_events).schema_arrow.names and not flag(params, "censored"):
            sign += " AND NOT (coalesce(CAST(e.censored AS VARCHAR), '') IN ('left', 'right', 'true'))"
        names = parquet_file(r.trace_tokens).schema_arrow.names
        text = "".join(f", t.{c}" for c in ("token_text", "context") if c in names)
        query = (f"SELECT e.*{text} FROM read_parquet({_lit(r.fit_events)}) e "
                 f"LEFT JOIN read_parquet({_lit(r.trace_tokens)}) t ON t.tok_idx = e.tok_idx "
                 f"WHERE e.mu BETWEEN {float(np.log(lo))!r} AND {float(np.log(hi))!r} {sign} ORDER BY e.a DESC")
    else:
        raise ExploreError(f"unknown download {what!r}", "choose tokens or events", status=404)
    opts = "FORMAT CSV, HEADER" if fmt == "csv" else "FORMAT PARQUET"
    con.execute(f"COPY ({query}) TO {_lit(out)} ({opts})")
    return out
