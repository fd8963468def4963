"""Reading and writing artifacts: JSON, .npy and parquet, each written to a temporary name beside
its final path, fsynced and renamed, so a crash never leaves a file that looks complete; each
read checks the file and names it in a one-line error. Knows no file names (rundir.py does).
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from tokenclock.errors import RunDirError


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success fsync it and rename over `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        yield tmp
        if tmp.is_file():
            with open(tmp, "rb") as fh:
                os.fsync(fh.fileno())
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise



def _fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)



def file_sha256(path: str | Path) -> str:
    """sha256 (hex) of a file's bytes, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def write_json(path: str | Path, obj: Any) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n")



def _json_default(o: Any) -> Any:
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serializable: {type(o).__name__}")



def json_safe(obj: Any) -> Any:
    """A copy in which NaN/inf floats are None (json.dumps would write the invalid token NaN)."""
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if isinstance(obj, (float, np.floating)):
        return float(obj) if np.isfinite(obj) else None
    return obj


def read_json(path: str | Path) -> Any:
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise RunDirError(f"{path} does not exist", "run the stage that writes it first") from None
    except json.JSONDecodeError as e:
        raise RunDirError(f"{path} is not valid JSON ({e.msg} at line {e.lineno})",
                          "delete it and rerun the stage that writes it") from None



def write_npy(path: str | Path, array: np.ndarray) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.save(fh, np.ascontiguousarray(array), allow_pickle=False)



def read_npy(path: str | Path, mmap: bool = False) -> np.ndarray:
    path = Path(path)
    if not path.is_file():
        raise RunDirError(f"{path} does not exist", "run the stage that writes it first")
    try:
        return np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:
        raise RunDirError(f"{path} is not a readable .npy file ({e})",
                          "delete it and rerun the stage that writes it") from None



def write_parquet(path: str | Path, columns: dict[str, Any], metadata: dict | None = None) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table({k: (v if isinstance(v, (pa.Array, pa.ChunkedArray)) else np.asarray(v)
                          if not isinstance(v, list) else v) for k, v in columns.items()})
    if metadata:
        table = table.replace_schema_metadata({"tokenclock": json.dumps(metadata, default=_json_default)})
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)



def read_parquet(path: str | Path, columns: list[str] | None = None) -> dict[str, np.ndarray]:
    """Read a parquet table into a dict of numpy arrays (strings become object arrays)."""
    import pyarrow.parquet as pq

    path = Path(path)
    if not path.is_file():
        raise RunDirError(f"{path} does not exist", "run the stage that writes it first")
    try:
        table = pq.read_table(path, columns=columns)
    except Exception as e:  # pyarrow raises several types for corrupt files
        raise RunDirError(f"{path} is not a readable parquet file ({type(e).__name__}: {e})".split("\n")[0],
                          "delete it and rerun the stage that writes it") from None
    return {name: table.column(name).to_numpy(zero_copy_only=False) for name in table.column_names}
