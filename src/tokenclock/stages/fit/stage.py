"""The fit stage: reads RUN/trace/loss.npy (K, N) and RUN/trace/axis.parquet, fits every token's
loss trajectory with 0, 1 or 2 sigmoid events (the models and classes: stages/fit/models.py; the
batched fitter: stages/fit/fitter.py), and writes RUN/fit/{events,tokens}.parquet and summary.json
(extra clocks such as cum_lr go to RUN/fit/<axis>/).
"""
from __future__ import annotations

import warnings
from dataclasses import asdict

import numpy as np

from tokenclock.artifacts import read_npy, read_parquet, write_json, write_parquet
from tokenclock.errors import ConfigError, DataError, RunDirError
from tokenclock.rundir import RunDir
from tokenclock.stages.fit.config import FitConfig
from tokenclock.stages.fit.fitter import FitResult, fit_matrix


def load_axis(run: RunDir, name: str) -> tuple[np.ndarray, np.ndarray]:
    """u = ln x for checkpoints with x > 0 of column `name` of RUN/trace/axis.parquet, and the
    boolean mask over the K rows that were kept."""
    table = read_parquet(run.trace_axis)
    if name not in table:
        raise ConfigError(f"axis {name!r} is not a column of {run.trace_axis}",
                          f"choose one of: {', '.join(sorted(table))}")
    x = np.asarray(table[name], dtype=np.float64)
    if not np.isfinite(x).all():
        raise DataError(f"axis {name!r} in {run.trace_axis} has {int((~np.isfinite(x)).sum())} "
                        "non-finite values", "re-run `tokenclock trace` or choose another axis")
    keep = x > 0
    xs = x[keep]
    if len(xs) and not (np.diff(xs) > 0).all():
        raise DataError(f"axis {name!r} in {run.trace_axis} is not strictly increasing",
                        "checkpoints must be traced in increasing order without duplicates")
    if keep.sum() < 4:
        raise DataError(f"axis {name!r} has only {int(keep.sum())} checkpoints with x > 0; "
                        "a sigmoid fit needs at least 4", "trace more checkpoints")
    return np.log(xs), keep


def _fit_axis(run: RunDir, loss_kn, name: str, cfg: FitConfig, progress: bool) -> FitResult:
    u, keep = load_axis(run, name)
    if len(keep) != loss_kn.shape[0]:
        raise DataError(f"{run.trace_axis} has {len(keep)} rows but {run.trace_loss} has "
                        f"{loss_kn.shape[0]} checkpoints", "re-run `tokenclock trace RUN`")
    mat = loss_kn if keep.all() else _RowSubset(loss_kn, np.nonzero(keep)[0])
    return fit_matrix(mat, u, cfg, progress=progress, axis=name)


class _RowSubset:
    """A (K', N) view of kept rows of a (K, N) memmap that reads columns lazily, chunk by chunk."""

    ndim = 2

    def __init__(self, base, rows: np.ndarray):
        self.base, self.rows = base, rows
        self.shape = (len(rows), base.shape[1])
        self._mmap = getattr(base, "_mmap", None)

    def __getitem__(self, idx):
        _, cols = idx
        return np.asarray(self.base[:, cols])[self.rows]


def write_result(run: RunDir, result: FitResult, axis: str | None = None) -> None:
    """Save one clock's fit: RUN/fit/ for the primary clock (axis None), else RUN/fit/<axis>/."""
    meta = {"axis": result.summary.get("axis")}
    write_parquet(run.fit_clock_events(axis), result.events, metadata=meta)
    write_parquet(run.fit_clock_tokens(axis), result.tokens, metadata=meta)
    write_json(run.fit_clock_summary(axis), result.summary)


def fit(run_dir, cfg: FitConfig | None = None, *, progress: bool = True) -> dict:
    """The fit stage: fit RUN/trace/loss.npy along cfg.axis into RUN/fit/ and along each extra
    axis into RUN/fit/<axis>/. Returns the primary summary."""
    cfg = cfg or FitConfig()
    run = run_dir if isinstance(run_dir, RunDir) else RunDir(run_dir)
    if not run.trace_loss.is_file():
        raise RunDirError(f"{run.trace_loss} does not exist", f"run `{run.command('trace')}` first")
    inputs = {"loss": str(run.trace_loss.relative_to(run.root)),
              "axis": str(run.trace_axis.relative_to(run.root))}
    with run.stage("fit", asdict(cfg), inputs=inputs):
        loss_kn = read_npy(run.trace_loss, mmap=True)
        if loss_kn.ndim != 2:
            raise DataError(f"{run.trace_loss} has shape {loss_kn.shape}, expected (K, N)",
                            "re-run `tokenclock trace RUN`")
        primary = _fit_axis(run, loss_kn, cfg.axis, cfg, progress)
        write_result(run, primary)
        columns = read_parquet(run.trace_axis)
        for name in cfg.extra_axes:
            if name not in columns:
                warnings.warn(f"fit: axis {name!r} not in {run.trace_axis} "
                              f"(has {', '.join(sorted(columns))}); skipped", stacklevel=2)
                continue
            write_result(run, _fit_axis(run, loss_kn, name, cfg, progress), name)
    return primary.summary
