"""The paper's loss-matrix format, `losses.npz`: axis_values [K], loss_matrix [N, K], axis_name,
and optional sample_id [N], token_pos [N], metadata. Reads one into a run directory's trace/ (so
fit, spectrum and report work unchanged) and exports a run's trace into one.
"""
from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np

from tokenclock.artifacts import atomic_path, read_json, read_npy, read_parquet, write_json, write_parquet
from tokenclock.errors import DataError, InputError
from tokenclock.rundir import RunDir

MIN_POINTS = 4


def read_losses_npz(path: str | Path) -> dict:
    """Load and check a losses.npz; returns a dict with numpy arrays and `axis_name` as str."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path} does not exist", "pass the path of a losses.npz file")
    try:
        z = np.load(path, allow_pickle=False)
        keys = set(z.files)
    except (ValueError, OSError, zipfile.BadZipFile, EOFError) as e:
        raise InputError(f"{path} is not a readable .npz file ({e})",
                         "write it with numpy.savez(path, axis_values=..., loss_matrix=..., axis_name=...)") from None
    for key in ("axis_values", "loss_matrix"):
        if key not in keys:
            raise InputError(f"{path} has no '{key}' array (it has: {', '.join(sorted(keys)) or 'nothing'})",
                             "save axis_values [K] and loss_matrix [N, K] in the npz")
    try:
        x = np.asarray(z["axis_values"], dtype=np.float64)
        loss = np.asarray(z["loss_matrix"])
    except ValueError as e:
        raise InputError(f"{path}: cannot read axis_values/loss_matrix ({e})") from None
    if x.ndim != 1 or loss.ndim != 2 or loss.shape[1] != x.shape[0]:
        raise DataError(f"{path}: loss_matrix has shape {loss.shape} and axis_values {x.shape}; "
                        "expected loss_matrix [N, K] with K = len(axis_values)",
                        "transpose the matrix if it is [K, N]")
    if not np.issubdtype(loss.dtype, np.number):
        raise DataError(f"{path}: loss_matrix has dtype {loss.dtype}, not numeric")
    check_axis(x, str(path))
    if loss.shape[0] == 0:
        raise DataError(f"{path}: loss_matrix has no rows (tokens)")
    bad = ~np.isfinite(loss)
    if bad.any():
        rows = np.unique(np.nonzero(bad)[0])
        raise DataError(f"{path}: loss_matrix has {int(bad.sum())} NaN/inf values in {len(rows)} rows "
                        f"(first row {int(rows[0])})", "drop or repair those rows before fitting")
    axis_name = "x"
    if "axis_name" in keys:
        try:
            axis_name = str(np.asarray(z["axis_name"]).reshape(-1)[0])
        except (ValueError, IndexError):
            pass
    out = {"axis_values": x, "loss_matrix": loss.astype(np.float32), "axis_name": axis_name}
    n = loss.shape[0]
    for key in ("sample_id", "token_pos"):
        if key in keys:
            v = np.asarray(z[key]).reshape(-1)
            if v.shape[0] != n:
                raise DataError(f"{path}: {key} has {v.shape[0]} entries but loss_matrix has {n} rows")
            out[key] = v.astype(np.int64)
    if "metadata" in keys:
        try:
            out["metadata"] = str(np.asarray(z["metadata"]).reshape(-1)[0])
        except (ValueError, IndexError):
            out["metadata"] = None
    return out


def check_axis(x: np.ndarray, where: str) -> None:
    if x.shape[0] < MIN_POINTS:
        raise DataError(f"{where}: {x.shape[0]} axis points; fitting needs at least {MIN_POINTS}",
                        "use more checkpoints / runs along the axis")
    if not np.isfinite(x).all() or (x <= 0).any():
        raise DataError(f"{where}: axis_values must be finite and > 0 (a log axis)",
                        "drop step 0 or shift the axis")
    if (np.diff(x) <= 0).any():
        i = int(np.nonzero(np.diff(x) <= 0)[0][0])
        raise DataError(f"{where}: axis_values are not strictly increasing (x[{i}]={x[i]:g}, x[{i + 1}]={x[i + 1]:g})",
                        "sort the columns by axis value and drop duplicates")


def import_npz(path: str | Path, out_dir: str | Path) -> str:
    """Write a losses.npz into out_dir/trace/ as a trace; returns the axis name."""
    d = read_losses_npz(path)
    run = RunDir(out_dir)
    with run.stage("trace", inputs={"npz": str(path)}) as st:
        loss = d["loss_matrix"]
        n, k = loss.shape
        with atomic_path(run.trace_loss) as tmp:
            mm = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=(k, n))
            for i in range(0, n, 1 << 18):
                mm[:, i:i + (1 << 18)] = loss[i:i + (1 << 18)].T
            mm.flush()
            del mm
        name = d["axis_name"]
        write_parquet(run.trace_axis, {name: d["axis_values"]})
        table = {"tok_idx": np.arange(n, dtype=np.int64),
                 "sequence": d.get("sample_id", np.zeros(n, dtype=np.int64)),
                 "position": d.get("token_pos", np.arange(n, dtype=np.int64))}
        write_parquet(run.trace_tokens, table)
        meta = {"n_tok": n, "n_ckpt": k, "vocab_size": None, "axes": [name], "source": "npz",
                "npz": str(path), "metadata": d.get("metadata")}
        write_json(run.trace_meta, meta)
        st.record(summary=meta)
    return name


def export_npz(run_dir: str | Path, path: str | Path, axis: str = "step",
               axis_name: str | None = None) -> Path:
    """Write RUN's trace as losses.npz along `axis` (rows with axis value <= 0 are dropped);
    `axis_name` (default: the column name) is stored as the npz's axis_name, e.g. D or M."""
    run = RunDir(run_dir)
    loss = read_npy(run.trace_loss, mmap=True)
    ax = read_parquet(run.trace_axis)
    if axis not in ax:
        raise InputError(f"{run.trace_axis} has no axis '{axis}' (it has: {', '.join(ax)})",
                         "pass --axis with one of those")
    x = np.asarray(ax[axis], dtype=np.float64)
    keep = x > 0
    toks = read_parquet(run.trace_tokens, columns=["sequence", "position"])
    meta = read_json(run.trace_meta) if run.trace_meta.is_file() else {}
    path = Path(path)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, axis_values=x[keep], loss_matrix=np.ascontiguousarray(np.asarray(loss[keep]).T),
                     axis_name=np.array(axis_name or axis), sample_id=toks["sequence"].astype(np.int64),
                     token_pos=toks["position"].astype(np.int64),
                     metadata=np.array(json.dumps({"run": str(run.root), **meta}, default=str)))
    return path
