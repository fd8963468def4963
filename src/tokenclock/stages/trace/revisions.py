"""Revision names of a checkpoint series and the axis row each stands for: the Pythia preset,
stepN / checkpoint-N / OLMo stepN-tokensNB names, a user's step map (CSV or JSON), and the
revisions of a hub repository (the hub's branches, or offline the huggingface_hub cache's) or a
local folder of checkpoint folders. Reads names only.

huggingface_hub is imported inside the functions that list branches.
"""
from __future__ import annotations

import csv
import json
import re
from pathlib import Path
from typing import Callable

from tokenclock.errors import ConfigError, InputError

# Pythia saved 154 checkpoints per model, all sizes at the same steps on the same data order:
# log-spaced to 512, then every 1000 steps (the `extra-save-iters` of its training configs).
PYTHIA_STEPS = [0] + [2 ** i for i in range(10)] + list(range(1000, 143001, 1000))
PYTHIA_TOKENS_PER_STEP = 2_097_152  # 1024 sequences x 2048 tokens
PRESETS: dict[str, Callable[[], list[str]]] = {"pythia": lambda: [f"step{s}" for s in PYTHIA_STEPS]}

# OLMo: `step1000-tokens4B` (also with a prefix, e.g. `stage1-step1000-tokens5B`).
OLMO_NAME = re.compile(r"step(\d+)-tokens(\d+)([KMBT]?)", re.IGNORECASE)
# Local folders: step0, step_0000128 (tokenclock), checkpoint-500 (HF Trainer), global_step100.
DEFAULT_STEP_PATTERN = r"(?:step|checkpoint)[-_]?(\d+)"
_SCALE = {"": 1, "K": 10 ** 3, "M": 10 ** 6, "B": 10 ** 9, "T": 10 ** 12}


def preset_revisions(name: str) -> list[str]:
    """The revision names of a preset (`pythia`: step0, step1, step2, step4, ..., step143000)."""
    if name not in PRESETS:
        raise ConfigError(f"unknown revision preset '{name}'", f"use one of: {', '.join(PRESETS)}")
    return PRESETS[name]()


def parse_revision(name: str, pattern: str | None = None) -> dict:
    """Axis row of a revision name: {"step": int, "tokens_seen": int or None}.

    OLMo names give tokens_seen (`step1000-tokens4B` -> 4e9); `pattern` is a regex whose first
    group (or group `step`) is the step; the default finds stepN, step_N, checkpoint-N, global_stepN.
    """
    base = Path(name).name or name
    if pattern is None:
        m = OLMO_NAME.search(base)
        if m:
            return {"step": int(m.group(1)), "tokens_seen": int(m.group(2)) * _SCALE[m.group(3).upper()]}
    try:
        rx = re.compile(pattern or DEFAULT_STEP_PATTERN, 0 if pattern else re.IGNORECASE)
    except re.error as e:
        raise ConfigError(f"--step-pattern {pattern!r} is not a valid regex ({e})") from None
    m = rx.search(base)
    if not m or not m.groups():
        raise InputError(f"cannot read a step from revision name '{name}'",
                         "pass --step-pattern REGEX (first group = step) or --step-map FILE (revision -> step)")
    step = m.group("step") if "step" in rx.groupindex else m.group(1)
    try:
        return {"step": int(step), "tokens_seen": None}
    except (TypeError, ValueError):
        raise InputError(f"--step-pattern matched '{step}' in '{name}', not an integer step",
                         "make the first group match digits only, e.g. step(\\d+)") from None


def read_step_map(path: str | Path) -> dict[str, dict]:
    """A user's mapping revision -> step (and optional tokens_seen), from CSV (columns revision,
    step[, tokens_seen]) or JSON ({"rev": step} or {"rev": {"step": .., "tokens_seen": ..}})."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"step map {path} does not exist", "pass a CSV or JSON file: revision -> step")
    out: dict[str, dict] = {}
    try:
        if path.suffix.lower() == ".json":
            for rev, v in json.loads(path.read_text()).items():
                v = v if isinstance(v, dict) else {"step": v}
                out[str(rev)] = {"step": int(v["step"]), "tokens_seen": _opt_int(v.get("tokens_seen"))}
        else:
            with open(path, newline="") as fh:
                for row in csv.DictReader(fh):
                    out[row["revision"].strip()] = {"step": int(row["step"]),
                                                    "tokens_seen": _opt_int(row.get("tokens_seen"))}
    except (ValueError, KeyError, TypeError, AttributeError, json.JSONDecodeError) as e:
        raise InputError(f"step map {path} is malformed ({type(e).__name__}: {e})",
                         "write CSV with a header `revision,step[,tokens_seen]` or JSON {\"rev\": step}") from None
    if not out:
        raise InputError(f"step map {path} is empty", "list one revision per row")
    return out


def _opt_int(v) -> int | None:
    return None if v in (None, "") else int(v)


def resolve_revisions(model: str, revisions: str | list[str] | None, pattern: str | None = None,
                      step_map: dict | None = None) -> list[str]:
    """Revision names from a preset name, `all`, a comma list, a text file (one per line) or the
    step map's keys. `all`: subfolders of a local --model folder whose names carry a step, or the
    branches of a hub repository."""
    if isinstance(revisions, (list, tuple)):
        return [str(r) for r in revisions]
    if revisions is None:
        if step_map:
            return list(step_map)
        revisions = "all" if Path(model).is_dir() else None
    if revisions is None:
        raise ConfigError(f"which revisions of {model}?", "pass --revisions pythia, a comma list or all")
    if revisions in PRESETS:
        return preset_revisions(revisions)
    if revisions == "all":
        names, _ = branches(model)  # subfolders, the hub's branches, or the cached ones
        if names is None:
            raise InputError(f"cannot list the revisions of {model} (offline and not in the huggingface_hub cache)",
                             "pass --revisions as a comma list or a suite (pythia)")
        keep = []
        for n in sorted(names):
            if step_map is not None:
                if n in step_map:
                    keep.append(n)
                continue
            try:
                parse_revision(n, pattern)
                keep.append(n)
            except InputError:
                continue
        if not keep:
            raise InputError(f"{model} has no revisions whose names carry a step",
                             "pass --revisions explicitly, --step-pattern REGEX or --step-map FILE")
        return keep
    if Path(revisions).is_file():
        return [ln.strip() for ln in Path(revisions).read_text().splitlines() if ln.strip()]
    return [r.strip() for r in revisions.split(",") if r.strip()]


def hub_branches(repo: str) -> list[str] | None:
    """Branch names of a hub repository (`list_repo_refs`), or None when the hub cannot be asked."""
    try:
        from huggingface_hub import HfApi

        return [b.name for b in HfApi().list_repo_refs(repo).branches]
    except Exception:
        return None


def cached_branches(repo: str, cache_dir: str | Path | None = None) -> list[str] | None:
    """Branch names the huggingface_hub cache holds a snapshot of (refs/NAME), or None."""
    from huggingface_hub import constants

    refs = Path(cache_dir or constants.HF_HUB_CACHE) / ("models--" + repo.replace("/", "--")) / "refs"
    if not refs.is_dir():
        return None
    return [str(p.relative_to(refs)) for p in refs.rglob("*") if p.is_file()] or None


def branches(model: str) -> tuple[list[str] | None, str]:
    """(branch or subfolder names, where from: 'local', 'hub', 'hub cache' or 'none'): subfolders of
    a local folder, else the hub's branches, else those the huggingface_hub cache holds (offline)."""
    if Path(model).is_dir():
        return [p.name for p in Path(model).iterdir() if p.is_dir() and not p.name.startswith(".")], "local"
    names = hub_branches(model)
    if names is not None:
        return names, "hub"
    names = cached_branches(model)
    return (names, "hub cache") if names is not None else (None, "none")
