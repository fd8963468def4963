"""The software a trace's rows were computed under, and the check that a resumed or extended trace
still computes the same numbers: when torch or transformers changed since the rows on disk were
traced, one of those rows is traced again and must agree within tolerance before any new row is
appended (transformers has changed Pythia's losses between releases). Reads progress.json's record;
writes nothing.
"""
from __future__ import annotations

import sys

import numpy as np

from tokenclock.errors import DataError
from tokenclock.manifest import versions

KEYS = ("torch", "transformers")
# mean / max |difference| in nats a re-traced row may show: fp32 kernels reorder sums (1e-6 ...
# 1e-5 here); bf16 rounds each logit to 8 bits of mantissa
TOLERANCE = {"fp32": (1e-4, 1e-2), "bf16": (2e-2, 0.5)}


def trace_versions() -> dict:
    """{"torch": ..., "transformers": ...} of this process."""
    v = versions()
    return {k: v.get(k) for k in KEYS}


def changed(old: dict | None, new: dict) -> list[str]:
    """The packages whose versions differ, as 'name old -> new' (none when old is unknown)."""
    if not old:
        return []
    return [f"{k} {old.get(k)} -> {new.get(k)}" for k in KEYS if old.get(k) != new.get(k)]


def check_row(label, old_row: np.ndarray, new_row: np.ndarray, dtype: str, what: list[str]) -> dict:
    """Compare a row on disk with the same row traced now; DataError when they disagree."""
    diff = np.abs(np.asarray(new_row, np.float64) - np.asarray(old_row, np.float64))
    mean_tol, max_tol = TOLERANCE[dtype]
    rec = {"changed": what, "row": str(label), "mean_abs_diff": float(diff.mean()), "max_abs_diff": float(diff.max()),
           "tolerance": [mean_tol, max_tol], "dtype": dtype}
    if diff.mean() > mean_tol or diff.max() > max_tol:
        raise DataError(f"checkpoint {label} traced again under {', '.join(what)} differs from the rows on disk "
                        f"(mean |diff| {diff.mean():.2e}, max {diff.max():.2e} nats; tolerance {mean_tol:g}, "
                        f"{max_tol:g})", "trace into a fresh --out (or delete trace/), or reinstall the "
                        "versions the trace was started with")
    print(f"tokenclock: warning: resuming a trace started under {', '.join(what)}; checkpoint {label} "
          f"re-traced agrees (mean |diff| {diff.mean():.1e} nats), appending", file=sys.stderr)
    return rec
