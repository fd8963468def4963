"""Opening one run-like directory for the explorer, read-only: says what is missing (and which stage
to run), memory-maps RUN/trace/loss.npy (K, N), and builds the compact per-token arrays (N,) the
page's colours and filters need from trace/tokens.parquet, fit/tokens.parquet and fit/events.parquet
(read in batches, never whole). Only RunDir names files; nothing here is written anywhere.
"""
from __future__ import annotations

import hashlib
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tokenclock.artifacts import read_json, read_npy, read_parquet
from tokenclock.errors import RunDirError, TokenclockError
from tokenclock.explore.db import batches, parquet_file, release_unused
from tokenclock.explore.index import FitIndex, fit_index
from tokenclock.rundir import RAW, RunDir, StudyDir

FIT_POINTS = 160  # points of the fitted curve drawn between the first and last kept checkpoint
GATHER_GAP = 1024  # tokens apart that gather() reads in one piece (4 KiB of float32)
_READERS = ThreadPoolExecutor(max_workers=8, thread_name_prefix="tokenclock-explore-read")


class ExploreError(TokenclockError):
    """A request the explorer cannot answer: a one-line message and its HTTP status."""

    exit_code = 4

    def __init__(self, message: str, fix: str | None = None, status: int = 400):
        super().__init__(message, fix)
        self.status = status


@dataclass
class RunData:
    """One opened run: the memmap, the axis, per-token arrays and what each view reads."""

    run: RunDir
    name: str
    loss: np.ndarray                      # (K, N) float32, memory-mapped
    axis: str                             # the fitted axis (clock), a column of trace/axis.parquet
    x: np.ndarray                         # (K,) float64 axis values of every checkpoint
    axis_table: dict[str, np.ndarray]
    sequences: tuple[np.ndarray, np.ndarray | None]  # (ids, starts): see seq()
    token_id: np.ndarray | None           # uint16 or int32 (N,), None when the trace has no token ids (npz)
    vocab_text: np.ndarray | None         # object (V,): text of each token id
    vocab_count: np.ndarray | None        # float64 (V,): training-set count per token id, NaN unknown
    fit: FitIndex | None = None
    has_spectrum: bool = False
    tok_idx: np.ndarray | None = None     # int64 (N,) when trace/tokens.parquet's tok_idx is not 0..N-1
    notes: list[str] = field(default_factory=list)
    signature: str = ""
    series: str = RAW                     # the weight series (RunDir.series: raw, or avg for averaged weights)
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

    def _fd(self) -> int:
        if "fd" not in self.cache:
            self.cache["fd"] = os.open(self.run.trace_loss, os.O_RDONLY)
        return self.cache["fd"]

    def _at(self, k: int, i: int) -> int:
        """Byte offset of loss[k, i] in trace/loss.npy (the memmap's header offset and strides)."""
        return self.loss.offset + k * self.loss.strides[0] + i * self.loss.strides[1]

    def column(self, i: int) -> np.ndarray:
        """float32 (K,) losses of token i: K reads at their offsets (os.pread). A page fault of the
        memmap would map a whole page-cache folio per checkpoint into the server (~13 MB of RSS per
        token at 200 checkpoints, measured); a read leaves those pages to the page cache."""
        size, fd = self.loss.dtype.itemsize, self._fd()
        buf = b"".join(os.pread(fd, size, self._at(k, i)) for k in range(self.n_ckpt))
        return np.frombuffer(buf, dtype=self.loss.dtype).astype(np.float32)

    def row(self, k: int, sel=slice(None)) -> np.ndarray:
        """float32 losses at checkpoint k of tokens `sel` (a slice with step 1, or indices), read
        with os.pread like column()."""
        size, fd, dt = self.loss.dtype.itemsize, self._fd(), self.loss.dtype
        if isinstance(sel, slice) and sel.step in (None, 1):
            a, b, _ = sel.indices(self.n_tok)
            if self.loss.strides[1] == size:  # C order: one contiguous read
                return np.frombuffer(os.pread(fd, (b - a) * size, self._at(k, a)), dt).astype(np.float32)
            sel = np.arange(a, b)
        idx = np.arange(self.n_tok)[sel] if isinstance(sel, slice) else np.atleast_1d(np.asarray(sel))
        if len(idx) > 4096:
            return self.row(k)[idx]
        buf = b"".join(os.pread(fd, size, self._at(k, int(i))) for i in idx)
        out = np.frombuffer(buf, dt).astype(np.float32)
        return out if np.ndim(sel) or isinstance(sel, slice) else out[0]

    def gather(self, cols: np.ndarray) -> np.ndarray:
        """float32 (K, len(cols)) losses of tokens `cols`, read with os.pread like column(): one read
        per checkpoint and token, or one per run of tokens closer than GATHER_GAP."""
        cols = np.asarray(cols, dtype=np.int64)
        order = np.argsort(cols, kind="stable")
        c = cols[order]
        size, fd, dt, step = self.loss.dtype.itemsize, self._fd(), self.loss.dtype, self.loss.strides[1]
        out = np.empty((self.n_ckpt, len(c)), np.float32)
        brk = np.r_[0, np.flatnonzero(np.diff(c) > GATHER_GAP) + 1, len(c)]
        lone = np.flatnonzero(np.diff(brk) == 1)  # groups of one token
        lone_pos, groups = brk[lone], [(s, e) for s, e in zip(brk[:-1], brk[1:]) if e - s > 1]
        lone_off = (c[lone_pos] * step).tolist()

        def rows(ks: range) -> None:
            for k in ks:
                base = self.loss.offset + k * self.loss.strides[0]
                if lone_off:
                    out[k, lone_pos] = np.frombuffer(b"".join([os.pread(fd, size, base + o) for o in lone_off]), dt)
                for s, e in groups:
                    lo, hi = int(c[s]), int(c[e - 1]) + 1
                    if step == size:
                        span = np.frombuffer(os.pread(fd, (hi - lo) * size, base + lo * step), dt)
                        out[k, s:e] = span[c[s:e] - lo]
                    else:
                        out[k, s:e] = self.row(k, c[s:e])

        # several reads in flight: pages not in the page cache come from the disk in parallel
        parts = [range(k, min(self.n_ckpt, k + 8)) for k in range(0, self.n_ckpt, 8)]
        list(_READERS.map(rows, parts)) if len(c) * self.n_ckpt > 4096 else rows(range(self.n_ckpt))
        res = np.empty_like(out)
        res[:, order] = out
        return res

    def final(self, sel=slice(None)) -> np.ndarray:
        """float32 loss at the last checkpoint of tokens `sel`, read when asked (never kept)."""
        return self.row(self.n_ckpt - 1, sel)

    def drop(self, sel=slice(None)) -> np.ndarray:
        """float32 total drop (loss at the first minus at the last checkpoint) of tokens `sel`; the
        first row is read when asked, never kept."""
        return self.row(0, sel) - self.final(sel)

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

    def seq(self, sel) -> np.ndarray:
        """Validation sequence of tokens `sel`. Kept as (ids, starts) of each run of equal ids when
        the column is sorted (the trace writes sequences one after another), else (ids per token, None)."""
        ids, starts = self.sequences
        if starts is None:
            return ids[sel]
        idx = np.arange(self.n_tok)[sel] if isinstance(sel, slice) else np.asarray(sel)
        return ids[np.searchsorted(starts, idx, side="right") - 1]

    def check_col(self, i: int) -> int:
        if not 0 <= i < self.n_tok:
            raise ExploreError(f"token {i} is out of range: run {self.name} has {self.n_tok:,} tokens "
                               f"(0..{self.n_tok - 1:,})", f"pass a token index in 0..{self.n_tok - 1}", status=404)
        return int(i)


# ----------------------------------------------------------------------------- opening


def _what_exists(run: RunDir) -> list[str]:
    have = []
    if run.manifest.is_file():
        have.append(run.rel(run.manifest))
    for d in (run.corpus_dir, run.tokens_dir):
        if d.is_dir():
            have.append(f"{d.name}/")
    if steps := run.ckpt_steps():
        have.append(f"{run.rel(run.weights_dir)}/ ({len(steps)} checkpoints)")
    if run.trace_partial.is_file():
        have.append(f"an unfinished trace ({run.rel(run.trace_partial)})")
    if run.losses_npz.is_file():
        have.append(run.rel(run.losses_npz))
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
    sd = StudyDir(root)
    if sd.manifest.is_file():
        inside = sorted(p for d in (sd.axes_dir(), sd.runs_dir) if d.is_dir() for p in d.iterdir() if p.is_dir())
        names = ", ".join(str(p) for p in inside[:4]) + (", ..." if len(inside) > 4 else "")
        raise RunDirError(f"{root} is a study directory, not a run", f"explore its axes or runs: {names or 'none yet'}")
    if run.trace_loss.is_file() and run.trace_tokens.is_file():
        return run
    have = _what_exists(run)
    if not have:
        raise RunDirError(f"{root} is not a tokenclock run (no {run.rel(run.manifest)}, no "
                          f"{run.rel(run.trace_loss)})", RUN_HINT)
    if run.losses_npz.is_file():
        fix = f"import it with `tokenclock fit --npz {run.losses_npz} --out DIR`, then explore DIR"
    else:
        fix = f"run `{run.command('trace')}` first"
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
    tok_idx, sequences, token_id = _token_columns(run, n)
    text, count = _vocab(run, token_id)
    data = RunData(run=run, name=name or run.root.name, loss=loss, axis=axis, x=x, axis_table=axis_table,
                   sequences=sequences, token_id=token_id, vocab_text=text, vocab_count=count,
                   tok_idx=tok_idx)
    data.series = getattr(run, "weights", RAW)
    data.signature = _signature(data)
    if run.fit_tokens.is_file() and run.fit_events.is_file():
        data.fit = fit_index(run, axis, n, data.cols_of)
        data.has_spectrum = run.spectrum_curve().is_file() and run.spectrum_density().is_file()
        if not data.has_spectrum:
            data.notes.append(f"no {run.rel(run.spectrum_dir)}/: the spectrum view shows a histogram of "
                              f"{run.rel(run.fit_events)}; run `{run.command('spectrum')}` for the measured "
                              "vs reconstructed -dL/du")
    else:
        data.notes.append(f"no fit/: trajectories and the text coloured by final loss or total drop only; run "
                          f"`tokenclock fit {run.root}` for learning times, classes, filters and the spectrum")
    release_unused()
    return data


def _fitted_axis(run: RunDir, table: dict) -> str:
    summary = read_json(run.fit_summary) if run.fit_summary.is_file() else {}
    axis = summary.get("axis") or ("step" if "step" in table else next(iter(table), None))
    if axis not in table:
        raise RunDirError(f"{run.trace_axis} has no column {axis!r} (the fitted axis)",
                          f"rerun `tokenclock fit {run.root}`")
    return axis


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
    for s, b in batches(run.trace_tokens, cols):
        e = s + b.num_rows
        if tok is not None:
            tok[s:e] = b.column("tok_idx").to_numpy()
            identity = identity and np.array_equal(tok[s:e], np.arange(s, e))
        if "sequence" in names:
            seq[s:e] = b.column("sequence").to_numpy()
        if ids is not None:
            ids[s:e] = b.column("token_id").to_numpy()
    if ids is not None and len(ids) and 0 <= ids.min() and ids.max() < 2**16:
        ids = ids.astype(np.uint16)  # a vocabulary under 65,536 ids (GPT-2, Pythia): half the memory
    if len(seq) and (np.diff(seq) >= 0).all():
        starts = np.r_[0, np.flatnonzero(np.diff(seq)) + 1]
        return (None if identity else tok), (seq[starts].copy(), starts), ids
    return (None if identity else tok), (seq, None), ids


def _vocab(run: RunDir, token_id: np.ndarray | None):
    """Text and training-set count of each token id (token_text is a function of token_id), from the
    first row of each id in trace/tokens.parquet (read in batches)."""
    if token_id is None:
        return None, None
    names = set(parquet_file(run.trace_tokens).schema_arrow.names)
    v = int(token_id.max()) + 1 if len(token_id) else 0
    text = np.array([f"#{i}" for i in range(v)], dtype=object) if "token_text" not in names else np.full(v, "", object)
    count = np.full(v, np.nan)
    seen = np.zeros(v, bool)
    cols = [c for c in ("token_text", "train_count") if c in names]
    for s, b in batches(run.trace_tokens, cols) if cols else ():
        ids = token_id[s:s + b.num_rows]
        first = np.flatnonzero(~seen[ids])
        first = first[np.unique(ids[first], return_index=True)[1]]  # one row per new id
        seen[ids[first]] = True
        if "token_text" in names:
            text[ids[first]] = b.column("token_text").take(first).to_pylist()
        if "train_count" in names:
            c = b.column("train_count").take(first).to_numpy(zero_copy_only=False).astype(np.float64)
            count[ids[first]] = np.where(c >= 0, c, np.nan)  # -1: a series traced without a training split
    if "train_count" not in names and run.token_counts.is_file():
        counts = read_npy(run.token_counts)
        key = np.flatnonzero(np.arange(v) < len(counts))
        count[key] = counts[key]
    return text, (None if np.isnan(count).all() else count)


def _signature(d: RunData) -> str:
    """A hash of the validation tokens (count, sequence, token ids): runs compare when it is equal."""
    h = hashlib.sha1(str(d.n_tok).encode())
    for part in d.sequences:
        h.update(b"" if part is None else np.ascontiguousarray(part).tobytes())
    if d.token_id is not None:
        h.update(np.ascontiguousarray(d.token_id).tobytes())
    return h.hexdigest()
