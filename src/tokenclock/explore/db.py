"""How the explorer reads the run's parquet tables: pyarrow batches (for building its in-memory
index) and one DuckDB database, in memory (nothing on disk: its spill folder is a new temporary
directory), for SQL over the tables, whose row-group statistics (zone maps) let a lookup by tok_idx
skip the row groups it does not need.
"""
from __future__ import annotations

import atexit
import os
import shutil
import tempfile
import threading
from pathlib import Path

from tokenclock.errors import RunDirError

BATCH_ROWS = 1 << 18  # rows per batch while indexing: the peak memory of a 10M-token run stays low

_db = None
_db_lock = threading.Lock()


def duck():
    """A cursor on the one in-memory DuckDB database (nothing on disk: its spill folder is a new
    temporary directory), limited to 2-4 threads and 128 MB."""
    global _db
    with _db_lock:
        if _db is None:
            import duckdb

            spill = tempfile.mkdtemp(prefix="tokenclock-explore-duckdb-")
            atexit.register(shutil.rmtree, spill, True)
            _db = duckdb.connect(":memory:", config={
                "threads": max(2, min(4, os.cpu_count() or 2)), "memory_limit": "128MB",
                "temp_directory": spill})
            try:
                _db.execute("SET parquet_metadata_cache = true")
            except Exception:  # older DuckDB: the setting is named enable_object_cache
                _db.execute("SET enable_object_cache = true")
        return _db.cursor()


def parquet_file(path: Path):
    import pyarrow.parquet as pq

    try:
        return pq.ParquetFile(path, pre_buffer=False)  # pre-buffering holds whole row groups
    except Exception as e:  # pyarrow raises several types for a corrupt file
        raise RunDirError(f"{path} is not a readable parquet file ({type(e).__name__})",
                          "rerun the stage that writes it") from None


def batches(path: Path, columns: list[str]):
    """(start row, record batch) over a parquet file, BATCH_ROWS rows at a time; the decoding
    buffers of each batch are handed back before the next is read."""
    start = 0
    for batch in parquet_file(path).iter_batches(batch_size=BATCH_ROWS, columns=columns):
        n = batch.num_rows
        yield start, batch
        del batch
        release_unused()
        start += n


def release_unused() -> None:
    """Hand freed memory back to the system: pyarrow's pool and glibc's heap keep it otherwise
    (about 500 MB after indexing a run of 10M tokens, measured)."""
    import ctypes
    import ctypes.util

    import pyarrow as pa

    pa.default_memory_pool().release_unused()
    try:
        ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: nothing to trim
        pass
