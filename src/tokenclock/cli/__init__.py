"""The `tokenclock` command: a thin layer that parses arguments, calls one library function per
stage, and turns TokenclockError into one line on stderr and a non-zero exit code.

Each command has an `add_<command>` function that registers its flags and a `cmd_<command>` that
runs it (run_cmds.py, share_cmds.py, grid_cmds.py; args.py holds what they share). Flags that set config keys are `--set` overrides (merged before the config is
loaded, so every check runs once, in the config dataclasses).
"""

from tokenclock.cli.main import build_parser, main

__all__ = ["build_parser", "main"]
