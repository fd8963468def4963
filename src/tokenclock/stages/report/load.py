"""Loading one run for the report: reads every artifact a report section may use (trace, fit,
spectrum, ckpt index, manifest) into a RunView; a stage that has not run leaves its fields empty.
The RunView also derives the few numbers several sections need (mean loss, power law, events).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tokenclock.artifacts import read_json, read_npy, read_parquet
from tokenclock.errors import RunDirError
from tokenclock.manifest import load_manifest
from tokenclock.rundir import RunDir
from tokenclock.scores import power_law_coefficients


@dataclass
class RunView:
    """Every artifact the report may use; None (or empty) where its stage has not run."""

    run: RunDir
    meta: dict
    loss: np.ndarray                      # (K, N) memory-mapped
    axis_table: dict[str, np.ndarray]     # trace/axis.parquet
    tokens: dict[str, np.ndarray]         # trace/tokens.parquet
    axis: str                             # the fitted axis
    fit_summary: dict | None = None
    fit_tokens: dict[str, np.ndarray] | None = None
    events: dict[str, np.ndarray] | None = None
    spec_summary: dict | None = None
    curves: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)  # axis -> curve table
    density: dict[str, np.ndarray] | None = None
    ckpt: dict[str, np.ndarray] | None = None
    manifest: dict | None = None

    _mean_loss: np.ndarray | None = None

    @property
    def mean_loss(self) -> np.ndarray:
        """(K,) mean loss over tokens per checkpoint, computed once."""
        if self._mean_loss is None:
            self._mean_loss = _mean_loss_per_ckpt(self.loss)
        return self._mean_loss

    def columns(self, tok_idx: Any) -> np.ndarray:
        """Column of loss.npy / row of trace/tokens.parquet for each tok_idx (vectorized)."""
        tok_idx = np.asarray(tok_idx, dtype=np.int64)
        ids = self.tokens.get("tok_idx")
        if ids is None or np.array_equal(ids, np.arange(len(ids))):
            return tok_idx
        order = np.argsort(ids, kind="stable")
        return order[np.searchsorted(ids, tok_idx, sorter=order)]

    @property
    def x(self) -> np.ndarray:
        """Axis values of all K checkpoints along the fitted axis."""
        return np.asarray(self.axis_table[self.axis], dtype=np.float64)

    def censored_sides(self) -> np.ndarray:
        """'none', 'left' or 'right' per row of fit/events.parquet: its `censored` column, or for
        a fit without one, whether mu lies before the first or after the last checkpoint."""
        if "censored" in self.events:
            return np.asarray(self.events["censored"]).astype(str)
        from tokenclock.stages.fit.resolution import censored

        x = self.x
        return censored(np.log(x[x > 0]), self.events["mu"]).astype(str)

    def largest_learning_events(self, measured: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """(tok_idx, mu) of each token's largest learning (a > 0) event in fit/events.parquet;
        measured: only tokens whose largest learning event is not censored."""
        pos = self.events["a"] > 0
        tok, a, mu = self.events["tok_idx"][pos], self.events["a"][pos], self.events["mu"][pos]
        order = np.lexsort((a, tok))
        tok, mu = tok[order], mu[order]
        last = np.r_[tok[1:] != tok[:-1], True] if len(tok) else np.zeros(0, bool)
        if measured:
            last &= self.censored_sides()[pos][order] == "none"
        return tok[last], mu[last]

    def power_law(self, alpha_key: str, x: np.ndarray, y: np.ndarray):
        """(E, A, alpha, source) of L = E + A x^-alpha for spectrum/summary.json's alpha_key
        (alpha_measured or alpha_spectrum): E and A from the summary when it has them, else least
        squares of the traced mean loss y(x) for that alpha. None without an alpha."""
        summary = self.spec_summary or {}
        alpha = summary.get(alpha_key)
        if not isinstance(alpha, (int, float)) or not math.isfinite(alpha):
            return None
        pl = summary.get("power_law" if alpha_key == "alpha_measured" else "power_law_spectrum")
        if isinstance(pl, dict) and all(isinstance(pl.get(k), (int, float)) and math.isfinite(pl[k])
                                        for k in ("E", "A")):
            return float(pl["E"]), float(pl["A"]), float(alpha), self.run.rel(self.run.spectrum_summary)
        ea = power_law_coefficients(x, y, alpha)
        return None if ea is None else (*ea, float(alpha), "least squares here")


def _mean_loss_per_ckpt(loss: np.ndarray) -> np.ndarray:
    """(K,) mean over tokens, one contiguous row at a time (never the whole matrix in memory);
    NaN losses are skipped (the report draws what it can; the spectrum stage refuses them)."""
    return np.array([float(np.nanmean(np.asarray(loss[k], dtype=np.float64)))
                     for k in range(loss.shape[0])])


def _optional(reader, path: Path, *args):
    return reader(path, *args) if Path(path).is_file() else None


def load_run(run: RunDir) -> RunView:
    if not run.trace_loss.is_file() or not run.trace_tokens.is_file():
        raise RunDirError(f"{run.trace_dir} has no loss matrix (loss.npy + tokens.parquet)",
                          f"run `{run.command('trace')}` first")
    meta = read_json(run.trace_meta) if run.trace_meta.is_file() else {}
    loss = read_npy(run.trace_loss, mmap=True)
    axis_table = read_parquet(run.trace_axis)
    fit_summary = _optional(read_json, run.fit_summary)
    spec_summary = _optional(read_json, run.spectrum_summary)
    axis = ((fit_summary or {}).get("axis") or (spec_summary or {}).get("axis")
            or ("step" if "step" in axis_table else next(iter(axis_table))))
    if axis not in axis_table:
        raise RunDirError(f"{run.trace_axis} has no column '{axis}' ({run.rel(run.fit_summary)} axis)",
                          f"rerun `{run.command('fit')}` on one of: {', '.join(axis_table)}")
    r = RunView(run=run, meta=meta, loss=loss, axis_table=axis_table,
             tokens=read_parquet(run.trace_tokens), axis=axis, fit_summary=fit_summary,
             spec_summary=spec_summary)
    r.fit_tokens = _optional(read_parquet, run.fit_tokens)
    r.events = _optional(read_parquet, run.fit_events)
    if r.run.spectrum_curve().is_file():
        r.curves[(spec_summary or {}).get("axis", axis)] = read_parquet(r.run.spectrum_curve())
    for clock in run.spectrum_clocks():
        r.curves.setdefault(clock, read_parquet(run.spectrum_curve(clock)))
    r.density = _optional(read_parquet, r.run.spectrum_density())
    r.ckpt = _optional(read_parquet, run.ckpt_index)
    r.manifest = load_manifest(run) if run.manifest.is_file() else None
    return r
