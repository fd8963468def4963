"""Opening one run-like directory for the explorer, read-only: says what is missing (and which stage
to run), memory-maps RUN/trace/loss.npy (K, N), and builds the compact per-token arrays (N,) the
page's colours and filters need from trace/tokens.parquet, fit/tokens.parquet and fit/events.parquet
(read in batches, never whole). Only RunDir names files; nothing here is written anywhere.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tokenclock.artifacts import read_json, read_npy, read_parquet
from tokenclock.errors import RunDirError, TokenclockError
from tokenclock.explore.db import duck
from tokenclock.rundir import RunDir
from tokenclock.stages.report.text import CLASS_ORDER

BATCH_ROWS = 1 << 20
FIT_POINTS = 160  # points of the fitted curve drawn between the first and last kept checkpoint


class ExploreError(TokenclockError):
    """A request the explorer cannot answer: a one-line message and its HTTP status."""

    exit_code = 4

    def __init__(self, message: str, fix: str | None = None, status: int = 400):
        super().__init__(message, fix)
        self.status = status


@dataclass
class FitIndex:
    """Per-token fit results (N,) and every event sorted by its learning time mu (ln x)."""

    axis: str
    classes: list[str]
    cls: np.ndarray          # int8 (N,): index into classes, -1 for a token without a fit row
    models: list[str]
    model: np.ndarray        # int8 (N,): index into models, -1 without a row
    r2: np.ndarray           # float32 (N,)
    n_events: np.ndarray     # int8 (N,)
    mu: np.ndarray           # float32 (N,): midpoint of the token's largest learning event (a > 0), NaN if none
    a: np.ndarray            # float32 (N,): that event's drop in nats
    ev_mu: np.ndarray        # float32 (M,) sorted, finite
    ev_a: np.ndarray         # float32 (M,)
    ev_col: np.ndarray       # int32 (M,): the event's token (column of loss.npy)


@dataclass
class RunData:
    """One opened run: the memmap, the axis, per-token arrays and what each view reads."""

    run: RunDir
    name: str
    loss: np.ndarray                      # (K, N) float32, memory-mapped
    axis: str                             # the fitted axis (clock), a column of trace/axis.parquet
    x: np.ndarray                         # (K,) float64 axis values of every checkpoint
    axis_table: dict[str, np.ndarray]
    sequence: np.ndarray                  # int32 (N,)
    token_id: np.ndarray | None           # int32 (N,), None when the trace has no token ids (npz)
    vocab_text: np.ndarray | None         # object (V,): text of each token id
    vocab_count: np.ndarray | None        # float64 (V,): training-set count per token id, NaN unknown
    final: np.ndarray                     # float32 (N,) loss at the last checkpoint
    drop: np.ndarray                      # float32 (N,) loss at the first minus at the last checkpoint
    fit: FitIndex | None = None
    has_spectrum: bool = False
    tok_idx: np.ndarray | None = None     # int64 (N,) when trace/tokens.parquet's tok_idx is not 0..N-1
    notes: list[str] = field(default_factory=list)
    signature: str = ""
    series: str = "raw"                   # the weight series (RunDir.series: raw, or avg for averaged weights)
    cache: dict = field(default_factory=dict, repr=False)  # explore.token's lookups of recent tokens

    @property
    def n_tok(self) -> int:
        return int(self.loss.shape[1])

    @property
    def n_ckpt(self) -> int:
        return int(self.loss.shape[0])

    @property
    def keep(self) -> np.ndarray:
        """(K,) checkpoints with x > 0: the ones the fit used (u = ln x)."""
        return self.x > 0

    @property
    def x_fit(self) -> np.ndarray:
        """(FIT_POINTS,) axis values at which the fitted curve is drawn (log-spaced)."""
        xs = self.x[self.keep]
        return np.geomspace(xs[0], xs[-1], FIT_POINTS) if len(xs) >= 2 else xs

    def tok_idx_of(self, col: np.ndarray) -> np.ndarray:
        return np.asarray(col) if self.tok_idx is None else self.tok_idx[col]

    def cols_of(self, tok_idx: np.ndarray) -> np.ndarray:
        """Column of loss.npy for each tok_idx (-1 where the trace has no such token)."""
        t = np.asarray(tok_idx, dtype=np.int64)
        if self.tok_idx is None:
            return np.where((t >= 0) & (t < self.n_tok), t, -1)
        order = np.argsort(self.tok_idx, kind="stable")
        pos = np.clip(np.searchsorted(self.tok_idx, t, sorter=order), 0, self.n_tok - 1)
        cols = order[pos]
        return np.where(self.tok_idx[cols] == t, cols, -1)

    def check_col(self, i: int) -> int:
        if not 0 <= i < self.n_tok:
            raise ExploreError(f"token {i} is out of range: run {self.name} has {self.n_tok:,} tokens "
                               f"(0..{self.n_tok - 1:,})", status=404)
        return int(i)


# ----------------------------------------------------------------------------- opening


def _what_exists(run: RunDir) -> list[str]:
    have = []
    if run.manifest.is_file():
        have.append("manifest.json")
    for d in (run.corpus_dir, run.tokens_dir):
        if d.is_dir():
            have.append(f"{d.name}/")
    if steps := run.ckpt_steps():
        have.append(f"ckpt/ ({len(steps)} checkpoints)")
    if run.trace_partial.is_file():
        have.append("an unfinished trace (trace/loss.partial.npy)")
    if (run.root / "losses.npz").is_file():
        have.append("losses.npz")
    return have


RUN_HINT = "pass a run directory: the --out of tokenclock train, trace or fit --npz, or a study's axes/<name>"


def check_run_dir(path: str | Path | RunDir) -> RunDir:
    """The run directory at `path`, or a RunDirError saying what it is instead and what to run."""
    run = path if isinstance(path, RunDir) else RunDir(path)
    root = run.root
    if not root.exists():
        raise RunDirError(f"{root} does not exist", RUN_HINT)
    if not root.is_dir():
        raise RunDirError(f"{root} is not a directory", "pass a run directory, not a file")
    if (root / "study.json").is_file():
        inside = sorted(p for d in ("axes", "runs") if (root / d).is_dir() for p in (root / d).iterdir()
                        if p.is_dir())
        names = ", ".join(str(p) for p in inside[:4]) + (", ..." if len(inside) > 4 else "")
        raise RunDirError(f"{root} is a study directory, not a run", f"explore its axes or runs: {names or 'none yet'}")
    if run.trace_loss.is_file() and run.trace_tokens.is_file():
        return run
    have = _what_exists(run)
    if not have:
        raise RunDirError(f"{root} is not a tokenclock run (no manifest.json, no trace/loss.npy)", RUN_HINT)
    if (root / "losses.npz").is_file():
        fix = f"import it with `tokenclock fit --npz {root / 'losses.npz'} --out DIR`, then explore DIR"
    else:
        fix = f"run `tokenclock trace {root}` first"
    raise RunDirError(f"{root} has no trace to explore (it has: {', '.join(have)})", fix)


def open_run(path: str | Path | RunDir, name: str | None = None, log=print) -> RunData:
    """Open a run-like directory read-only (see check_run_dir for what is refused)."""
    run = check_run_dir(path)
    loss = read_npy(run.trace_loss, mmap=True)
    if loss.ndim != 2:
        raise RunDirError(f"{run.trace_loss} has shape {loss.shape}, expected (checkpoints, tokens)",
                          f"rerun `tokenclock trace {run.root}`")
    k, n = loss.shape
    if k * n > 10_000_000:
        log(f"explore: indexing {run.root} ({n:,} tokens x {k} checkpoints) ...")
    axis_table = read_parquet(run.trace_axis)
    axis = _fitted_axis(run, axis_table)
    x = np.asarray(axis_table[axis], dtype=np.float64)
    if len(x) != k:
        raise RunDirError(f"{run.trace_axis} has {len(x)} rows but {run.trace_loss} has {k} checkpoints",
                          f"rerun `tokenclock trace {run.root}`")
    tok_idx, sequence, token_id = _token_columns(run, n)
    text, count = _vocab(run, token_id)
    final = np.asarray(loss[k - 1], dtype=np.float32)
    data = RunData(run=run, name=name or run.root.name, loss=loss, axis=axis, x=x, axis_table=axis_table,
                   sequence=sequence, token_id=token_id, vocab_text=text, vocab_count=count, final=final,
                   drop=np.asarray(loss[0], dtype=np.float32) - final, tok_idx=tok_idx)
    data.series = getattr(run, "weights", "raw")
    data.signature = _signature(data)
    if run.fit_tokens.is_file() and run.fit_events.is_file():
        data.fit = _fit_index(data)
        data.has_spectrum = run.spectrum_curve().is_file() and run.spectrum_density().is_file()
        if not data.has_spectrum:
            data.notes.append(f"no spectrum/: the spectrum view shows a histogram of fit/events.parquet; run "
                              f"`tokenclock spectrum {run.root}` for the measured vs reconstructed -dL/du")
    else:
        data.notes.append(f"no fit/: trajectories and the text coloured by final loss or total drop only; run "
                          f"`tokenclock fit {run.root}` for learning times, classes, filters and the spectrum")
    return data


def _fitted_axis(run: RunDir, table: dict) -> str:
    summary = read_json(run.fit_summary) if run.fit_summary.is_file() else {}
    axis = summary.get("axis") or ("step" if "step" in table else next(iter(table), None))
    if axis not in table:
        raise RunDirError(f"{run.trace_axis} has no column {axis!r} (the fitted axis)",
                          f"rerun `tokenclock fit {run.root}`")
    return axis


def parquet_file(path: Path):
    import pyarrow.parquet as pq

    try:
        return pq.ParquetFile(path)
    except Exception as e:  # pyarrow raises several types for a corrupt file
        raise RunDirError(f"{path} is not a readable parquet file ({type(e).__name__})",
                          "rerun the stage that writes it") from None


def _batches(path: Path, columns: list[str]):
    """(start row, record batch) over a parquet file, BATCH_ROWS rows at a time."""
    start = 0
    for batch in parquet_file(path).iter_batches(batch_size=BATCH_ROWS, columns=columns):
        yield start, batch
        start += batch.num_rows


def _token_columns(run: RunDir, n: int):
    """tok_idx (None when it is 0..N-1), sequence and token_id (None if absent) of trace/tokens.parquet."""
    pf = parquet_file(run.trace_tokens)
    names = set(pf.schema_arrow.names)
    if pf.metadata.num_rows != n:
        raise RunDirError(f"{run.trace_tokens} has {pf.metadata.num_rows:,} rows but {run.trace_loss} has "
                          f"{n:,} tokens", f"rerun `tokenclock trace {run.root}`")
    cols = [c for c in ("tok_idx", "sequence", "token_id") if c in names]
    tok = np.empty(n, np.int64) if "tok_idx" in names else None
    seq = np.zeros(n, np.int32)
    ids = np.empty(n, np.int32) if "token_id" in names else None
    identity = True
    for s, b in _batches(run.trace_tokens, cols):
        e = s + b.num_rows
        if tok is not None:
            tok[s:e] = b.column("tok_idx").to_numpy()
            identity = identity and np.array_equal(tok[s:e], np.arange(s, e))
        if "sequence" in names:
            seq[s:e] = b.column("sequence").to_numpy()
        if ids is not None:
            ids[s:e] = b.column("token_id").to_numpy()
    return (None if identity else tok), seq, ids


def _vocab(run: RunDir, token_id: np.ndarray | None):
    """Text and training-set count of each token id (token_text is a function of token_id)."""
    if token_id is None:
        return None, None
    names = set(parquet_file(run.trace_tokens).schema_arrow.names)
    v = int(token_id.max()) + 1 if len(token_id) else 0
    text = np.full(v, "", dtype=object)
    count = np.full(v, np.nan)
    cols = ["token_id"] + [c for c in ("token_text", "train_count") if c in names]
    sel = ", ".join(["token_id"] + [f"any_value({c})" if c == "token_text" else f"max({c})" for c in cols[1:]])
    rows = duck().execute(f"SELECT {sel} FROM read_parquet(?) GROUP BY token_id",
                          [str(run.trace_tokens)]).fetchnumpy()
    key = np.asarray(rows["token_id"], dtype=np.int64)
    if "token_text" in names:
        text[key] = np.asarray(rows["any_value(token_text)"], dtype=object)
    else:
        text[key] = [f"#{i}" for i in key]
    if "train_count" in names:
        c = np.asarray(rows["max(train_count)"], dtype=np.float64)
        count[key] = np.where(c >= 0, c, np.nan)  # -1: a series traced without a training split
    elif run.token_counts.is_file():
        counts = read_npy(run.token_counts)
        ok = key < len(counts)
        count[key[ok]] = counts[key[ok]]
    return text, (None if np.isnan(count).all() else count)


def _signature(d: RunData) -> str:
    """A hash of the validation tokens (count, sequence, token ids): runs compare when it is equal."""
    h = hashlib.sha1(str(d.n_tok).encode())
    h.update(np.ascontiguousarray(d.sequence).tobytes())
    if d.token_id is not None:
        h.update(np.ascontiguousarray(d.token_id).tobytes())
    return h.hexdigest()


def _codes(values, names: list[str]) -> np.ndarray:
    """int8 index of each string of a pyarrow array in `names` (extended with new names)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    for v in pc.unique(values).to_pylist():
        if v is not None and v not in names:
            names.append(v)
    idx = pc.index_in(values, value_set=pa.array(names, pa.string()))
    return idx.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int8)


def _fit_index(d: RunData) -> FitIndex:
    run, n = d.run, d.n_tok
    fi = FitIndex(axis=d.axis, classes=list(CLASS_ORDER), cls=np.full(n, -1, np.int8), models=[],
                  model=np.full(n, -1, np.int8), r2=np.full(n, np.nan, np.float32),
                  n_events=np.zeros(n, np.int8), mu=np.full(n, np.nan, np.float32),
                  a=np.full(n, np.nan, np.float32), ev_mu=np.zeros(0, np.float32),
                  ev_a=np.zeros(0, np.float32), ev_col=np.zeros(0, np.int32))
    names = set(parquet_file(run.fit_tokens).schema_arrow.names)
    want = [c for c in ("tok_idx", "class", "model", "r2", "n_events") if c in names]
    for _, b in _batches(run.fit_tokens, want):
        cols = d.cols_of(b.column("tok_idx").to_numpy())
        ok = cols >= 0
        if "class" in names:
            fi.cls[cols[ok]] = _codes(b.column("class"), fi.classes)[ok]
        if "model" in names:
            fi.model[cols[ok]] = _codes(b.column("model"), fi.models)[ok]
        for c in ("r2", "n_events"):
            if c in names:
                getattr(fi, c)[cols[ok]] = b.column(c).to_numpy(zero_copy_only=False)[ok]
    _event_index(d, fi)
    return fi


def _event_index(d: RunData, fi: FitIndex) -> None:
    """fi.ev_* (every event, sorted by mu) and fi.mu / fi.a (each token's largest learning event)."""
    m = parquet_file(d.run.fit_events).metadata.num_rows
    mu, a, col = np.empty(m, np.float32), np.empty(m, np.float32), np.empty(m, np.int32)
    for s, b in _batches(d.run.fit_events, ["tok_idx", "a", "mu"]):
        e = s + b.num_rows
        col[s:e] = d.cols_of(b.column("tok_idx").to_numpy())
        a[s:e] = b.column("a").to_numpy(zero_copy_only=False)
        mu[s:e] = b.column("mu").to_numpy(zero_copy_only=False)
        t, ab, mb = col[s:e], a[s:e], mu[s:e]
        pos = (ab > 0) & (t >= 0) & np.isfinite(mb)
        t, ab, mb = t[pos], ab[pos], mb[pos]
        order = np.lexsort((ab, t))  # largest a last within each token
        t, ab, mb = t[order], ab[order], mb[order]
        last = np.r_[t[1:] != t[:-1], True] if len(t) else np.zeros(0, bool)
        t, ab, mb = t[last], ab[last], mb[last]
        better = ~(fi.a[t] >= ab)  # NaN (no event yet) counts as smaller
        fi.a[t[better]], fi.mu[t[better]] = ab[better], mb[better]
    good = np.isfinite(mu) & np.isfinite(a) & (col >= 0)
    if not good.all():
        mu, a, col = mu[good], a[good], col[good]
    order = np.argsort(mu, kind="stable")
    fi.ev_mu, fi.ev_a, fi.ev_col = mu[order], a[order], col[order]
