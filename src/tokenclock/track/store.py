"""One growing trace on disk: OUT/trace/ (or trace_avg/) written a row at a time by the tracker, in
the layout every later stage reads (loss.npy float32 (n_rows, n_tok), axis.parquet, tokens.parquet,
inputs.npy, meta.json), plus track.json, the record that says which rows are final.

loss.npy keeps a fixed 128-byte header: a row is appended after the last one and fsynced, then the
header's row count is rewritten in place, then axis.parquet, meta.json and track.json are replaced
atomically. track.json is the authority: reopening cuts loss.npy back to the rows it lists, so a
kill at any point leaves (after the next open) exactly the rows that were recorded.
"""
from __future__ import annotations

import os

import numpy as np

from tokenclock.artifacts import read_json, write_json, write_npy, write_parquet
from tokenclock.errors import RunDirError
from tokenclock.rundir import RunDir

HEADER_BYTES = 128  # magic (6) + version (2) + length (2) + the dict, padded with spaces to 128
TRACK_VERSION = 1


def _header(n_rows: int, n_tok: int) -> bytes:
    text = "{'descr': '<f4', 'fortran_order': False, 'shape': (%d, %d), }" % (n_rows, n_tok)
    body = text.ljust(HEADER_BYTES - 10 - 1) + "\n"
    return b"\x93NUMPY\x01\x00" + len(body).to_bytes(2, "little") + body.encode("latin1")


class TraceStore:
    """The files of one weight series' growing trace; `rows` are the axis rows loss.npy holds."""

    def __init__(self, run: RunDir, n_tok: int):
        self.run, self.n_tok = run, n_tok
        self.rows: list[dict] = []
        self.state: dict = {}

    # ------------------------------------------------------------------ open

    def exists(self) -> bool:
        return self.run.trace_track.is_file()

    def foreign(self) -> bool:
        """A trace made by `tokenclock trace` (or an import), not by a tracker: never appended to."""
        return not self.exists() and (self.run.trace_loss.is_file() or self.run.trace_partial.is_file())

    def open(self) -> dict:
        """Read track.json and cut loss.npy back to the rows it lists; returns the record."""
        self.state = read_json(self.run.trace_track)
        self.rows = list(self.state["rows"])
        path, k = self.run.trace_loss, len(self.rows)
        need = HEADER_BYTES + k * self.n_tok * 4
        size = path.stat().st_size if path.is_file() else -1
        if size < need:
            raise RunDirError(f"{path} holds fewer rows than {self.run.trace_track} lists ({k})",
                              f"delete {self.run.trace_dir} and trace again")
        if size != need or self._header_rows() != k:
            with open(path, "r+b") as fh:
                fh.truncate(need)
                fh.seek(0)
                fh.write(_header(k, self.n_tok))
                fh.flush()
                os.fsync(fh.fileno())
            self._write_axis()
        return self.state

    def _header_rows(self) -> int:
        with open(self.run.trace_loss, "rb") as fh:
            text = fh.read(HEADER_BYTES)[10:].decode("latin1")
        try:
            return int(text.split("'shape': (")[1].split(",")[0])
        except (IndexError, ValueError):
            return -1

    def create(self, state: dict, inputs: np.ndarray, table: dict, meta: dict) -> None:
        """A new trace: inputs.npy, tokens.parquet, meta.json, an empty loss.npy, track.json."""
        self.run.trace_dir.mkdir(parents=True, exist_ok=True)
        write_npy(self.run.trace_inputs, inputs.astype(np.int32))
        write_parquet(self.run.trace_tokens, table)
        write_json(self.run.trace_meta, meta)
        tmp = self.run.trace_loss.with_name(f".{self.run.trace_loss.name}.tmp{os.getpid()}")
        with open(tmp, "wb") as fh:
            fh.write(_header(0, self.n_tok))
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.run.trace_loss)
        self.state, self.rows = {**state, "version": TRACK_VERSION, "rows": []}, []
        write_json(self.run.trace_track, self.state)

    # ------------------------------------------------------------------ append

    def append(self, row: dict, losses: np.ndarray, extra: dict, meta_update: dict) -> None:
        """Row `row` with per-token losses (n_tok,) float32; `extra` goes into track.json."""
        k = len(self.rows)
        flat = np.ascontiguousarray(losses, dtype="<f4").reshape(-1)
        with open(self.run.trace_loss, "r+b") as fh:
            fh.seek(HEADER_BYTES + k * self.n_tok * 4)
            fh.write(flat.tobytes())
            fh.flush()
            os.fsync(fh.fileno())
            fh.seek(0)
            fh.write(_header(k + 1, self.n_tok))
            fh.flush()
            os.fsync(fh.fileno())
        self.rows.append(row)
        self._write_axis()
        meta = read_json(self.run.trace_meta)
        meta.update(meta_update, n_ckpt=len(self.rows))
        meta.setdefault("mean_loss_first", float(np.mean(flat)))
        meta["mean_loss_last"] = float(np.mean(flat))
        write_json(self.run.trace_meta, meta)
        self.state.update(extra, rows=self.rows)
        write_json(self.run.trace_track, self.state)

    def _write_axis(self) -> None:
        if not self.rows:
            return
        cols = {}
        for key in self.rows[0]:
            vals = [r.get(key) for r in self.rows]
            if any(v is None for v in vals):
                vals = [float("nan") if v is None else float(v) for v in vals]
            cols[key] = np.asarray(vals)
        write_parquet(self.run.trace_axis, cols)
