"""The explorer's one DuckDB database, in memory (nothing on disk: its spill folder is a new
temporary directory): SQL over the run's parquet tables, whose row-group statistics (zone maps) let
a lookup by tok_idx skip the row groups it does not need.
"""
from __future__ import annotations

import atexit
import os
import shutil
import tempfile
import threading

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
