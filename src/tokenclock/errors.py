"""Errors a user can act on: one line saying what is wrong and how to fix it, and an exit code.

The CLI prints `tokenclock: error: <message>` and exits with the code; `--debug` shows the traceback.
"""
from __future__ import annotations


class TokenclockError(Exception):
    """Base class: a problem with the user's input or environment, not a bug."""

    exit_code = 2

    def __init__(self, message: str, fix: str | None = None):
        self.message = message
        self.fix = fix
        super().__init__(f"{message} ({fix})" if fix else message)


class ConfigError(TokenclockError):
    """Unknown key, bad value, unknown preset."""

    exit_code = 3


class InputError(TokenclockError):
    """Missing, empty, undecodable or malformed input files."""

    exit_code = 4


class CorpusError(InputError):
    """Corpus too small, fetch failed, checksum mismatch."""

    exit_code = 5


class RunDirError(TokenclockError):
    """A run directory that is missing a stage's output, holds another run, or is locked."""

    exit_code = 6


class RunLockedError(RunDirError):
    """Another process holds the run directory's lock (lock.run_lock); same exit code."""


class DataError(TokenclockError):
    """NaN/inf losses, non-increasing axes, too few checkpoints, shape mismatches."""

    exit_code = 7


class TrainingError(TokenclockError):
    """Training diverged (NaN loss) or cannot continue."""

    exit_code = 8


class TokenizerError(TokenclockError):
    """A tokenizer that does not match the model or the run."""

    exit_code = 9
