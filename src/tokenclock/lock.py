"""One writer per run directory: RUN/.lock holds the pid, host and stage of the process that writes;
a second process is refused with the holder's name, and a lock left by a dead process on this host
is taken over. Works on any folder object with `.root` and `.lock` (RunDir, PoolDir).
"""
from __future__ import annotations

import contextlib
import json
import os
import socket
import time
from typing import Any, Iterator

from tokenclock.errors import RunDirError, RunLockedError


@contextlib.contextmanager
def run_lock(run, stage: str) -> Iterator[None]:
    """Hold `RUN/.lock` while a stage writes. A second process is refused with the holder's pid;
    a lock left by a dead process on this host is taken over."""
    run.root.mkdir(parents=True, exist_ok=True)
    me = {"pid": os.getpid(), "host": socket.gethostname(), "stage": stage,
          "since": time.strftime("%Y-%m-%dT%H:%M:%S")}
    for _ in range(2):
        try:
            fd = os.open(run.lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            holder = _holder(run)
            if holder is None:  # gone meanwhile: try again
                continue
            if holder.get("pid") == os.getpid():
                yield  # re-entrant within one process (demo runs stages in sequence)
                return
            if holder.get("host") == socket.gethostname() and not _pid_alive(holder.get("pid")):
                with contextlib.suppress(FileNotFoundError):
                    run.lock.unlink()  # stale: its process is gone
                continue
            raise RunLockedError(f"{run.root} is in use by pid {holder.get('pid')} on "
                              f"{holder.get('host')} (stage {holder.get('stage')}, since "
                              f"{holder.get('since')})",
                              f"wait for it to finish, or delete {run.lock} if that process is gone")
        with os.fdopen(fd, "w") as fh:
            fh.write(json.dumps(me))
        try:
            yield
        finally:
            with contextlib.suppress(FileNotFoundError):
                run.lock.unlink()
        return
    raise RunDirError(f"could not take the lock {run.lock}", "delete it and retry")



def _holder(run, wait_s: float = 2.0) -> dict | None:
    """The lock's record; a lock created but not yet written (another process between its create
    and its write) is re-read for up to wait_s. None when the lock is gone."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            holder = json.loads(run.lock.read_text() or "{}")
        except FileNotFoundError:
            return None
        except (OSError, json.JSONDecodeError):
            holder = {}
        if holder or time.monotonic() > deadline:
            return holder
        time.sleep(0.05)


def _pid_alive(pid: Any) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
