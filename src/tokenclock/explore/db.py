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

BATCH_ROWS = 1 << 20

_db = None
_db_lock = threading.Lock()


def duck():
    """A cursor on the one in-memory DuckDB database (nothing on disk: its spill folder is a new
    temporary directory), limited to 2-4 threads and 512 MB."""
    global _db
    with _db_lock:
        if _db is None:
            import duckdb

            spill = tempfile.mkdtemp(prefix="tokenclock-explore-duckdb-")
            atexit.register(shutil.rmtree, spill, True)
            _db = duckdb.connect(":memory:", config={
                "threads": max(2, min(4, os.cpu_count() or 2)), "memory_limit": "512MB",
                "temp_directory": spill})
            try:
                _db.execute("SET parquet_metadata_cache = true")
            except Exception:  # older DuckDB: the setting is named enable_object_cache
                _db.execute("SET enable_object_cache = true")
        return _db.cursor()


def parquet_file(path: Path):
    import pyarrow.parquet as pq

    try:
        return pq.ParquetFile(path)
    except Exception as e:  # pyarrow raises several types for a corrupt file
        raise RunDirError(f"{path} is not a readable parquet file ({type(e).__name__})",
                          "rerun the stage that writes it") from None


def batches(path: Path, columns: list[str]):
    """(start row, record batch) over a parquet file, BATCH_ROWS rows at a time."""
    start = 0
    for batch in parquet_file(path).iter_batches(batch_size=BATCH_ROWS, columns=columns):
        yield start, batch
        start += batch.num_rows
