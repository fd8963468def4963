"""What every command shares: the config from --config/--set plus its own flags, the common
flags, and printing a result as JSON."""
from __future__ import annotations

import json

from tokenclock.config import load_config, merge, parse_overrides


def config_of(args, flags: dict | None = None, defaults: dict | None = None):
    """The config file plus overrides: `defaults` < `--set` < `flags` (a command's own flags)."""
    over = merge(defaults or {}, parse_overrides(getattr(args, "set", None)))
    return load_config(getattr(args, "config", None), merge(over, flags or {}))


def flags_of(args, section: str, names: tuple[str, ...]) -> dict:
    """{section: {name: value}} for the flags the user gave (argparse dest = config key)."""
    return {section: {n: getattr(args, n) for n in names if getattr(args, n) is not None}}


def show(obj) -> None:
    print(json.dumps(obj, indent=2, default=str))


def common_flags(sp, config: bool = True) -> None:
    if config:
        sp.add_argument("--config", help="YAML config file or preset name (tiny, demo, gpu)")
        sp.add_argument("--set", action="append", metavar="KEY=VALUE",
                        help="override a config key, e.g. --set train.steps=500 (repeatable)")
    sp.add_argument("--quiet", action="store_true", help="no progress bars")
