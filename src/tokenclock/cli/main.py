"""The `tokenclock` command: the parser of every subcommand and the entry point, which turns
TokenclockError into one line on stderr and a non-zero exit code."""
from __future__ import annotations

import argparse
import errno
import sys

from tokenclock.cli.grid_cmds import add_demo, add_presets, add_study
from tokenclock.cli.run_cmds import (
    add_corpus,
    add_explore,
    add_fit,
    add_report,
    add_spectrum,
    add_tokenize,
    add_trace,
    add_train,
)
from tokenclock.cli.share_cmds import add_export, add_import, add_reshape
from tokenclock.errors import TokenclockError

COMMANDS = (add_corpus, add_tokenize, add_train, add_trace, add_fit, add_spectrum, add_report,
            add_explore, add_reshape, add_export, add_import, add_demo, add_study, add_presets)  # the order of --help


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tokenclock", description=(
        "When does each token get learned, and how do those moments add up to the scaling law? "
        "Stages: corpus -> tokenize -> train -> trace -> fit -> spectrum -> report (or `demo` for all)."))
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = p.add_subparsers(dest="command", required=True)
    for add in COMMANDS:
        add(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except TokenclockError as e:
        if args.debug:
            raise
        print(f"tokenclock: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("tokenclock: interrupted; finished work is kept, rerun the same command to resume",
              file=sys.stderr)
        return 130
    except OSError as e:
        if args.debug:
            raise
        if e.errno == errno.ENOSPC:
            print(f"tokenclock: error: disk full while writing {e.filename or ''} (free space and "
                  "rerun the same command; finished artifacts are intact)", file=sys.stderr)
            return 10
        print(f"tokenclock: error: {e.strerror or e}: {e.filename or ''}", file=sys.stderr)
        return 11


if __name__ == "__main__":
    sys.exit(main())
