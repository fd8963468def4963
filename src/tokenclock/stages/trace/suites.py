"""Public checkpoint suites by name (`--revisions pythia`, `polypythias`, `olmo2-7b`, `olmo`, `amber`):
how each names its branches, which steps it published, and how many tokens a step is, so that
the tokens axis is right. The branch list is read from the hub (`list_repo_refs`) when it can be
asked, else from the huggingface_hub cache's refs (what this machine holds), else from the
published grid (revisions.branches); steps the grid has and the list lacks are reported, never
interpolated. Sources for every number: docs/guide/suites.md.
"""
from __future__ import annotations

import math
import re
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from tokenclock.errors import ConfigError, InputError
from tokenclock.stages.trace.revisions import PYTHIA_STEPS, PYTHIA_TOKENS_PER_STEP, branches, parse_revision

AMBER_TOKENS_PER_CKPT = 1_706_976 * 2048  # amber-train main.py: examples per data chunk x seq_len; one ckpt per chunk


@dataclass(frozen=True)
class Suite:
    """One family of public checkpoint series and how to read its branch names."""

    name: str
    repos: str  # how its hub repositories are named
    pattern: str  # a branch of the suite matches this; group 1 is the number in the name
    tokens_per_step: int | None  # None: the branch names carry the tokens (rounded)
    grid: tuple[int, ...] | None = None  # the published numbers (None: read from the hub)
    name_format: str = "step{}"  # number -> branch name, for the grid
    step_offset: int = 0  # step = number in the name + this (Amber's ckpt_000 follows one chunk)
    tokens_rounding: float | None = None  # names round tokens up to this: checked against tokens_per_step

    def row(self, name: str) -> dict:
        """{"step", "tokens_seen"} of one branch name of this suite."""
        m = re.search(self.pattern, name)
        if not m:
            raise InputError(f"revision '{name}' is not a {self.name} branch (pattern {self.pattern})",
                             f"pass revisions named like {self.name_format.format(1000)}")
        step = int(m.group(1)) + self.step_offset
        if self.tokens_per_step:
            tokens = step * self.tokens_per_step
            if self.tokens_rounding and "tokens" in m.groupdict() and m.group("tokens"):
                named = int(m.group("tokens"))
                if math.ceil(tokens / self.tokens_rounding) != named:
                    raise InputError(f"{name}: {step} steps x {self.tokens_per_step} tokens = {tokens:.4g}, "
                                     f"but the name says {named}B", "pass --tokens-per-step for this model size")
            return {"step": step, "tokens_seen": tokens}
        return {"step": step, "tokens_seen": parse_revision(name)["tokens_seen"]}  # OLMo names carry tokens


_OLMO = r"(?:^|-)step(\d+)-tokens(?P<tokens>\d+)B$"
SUITES: dict[str, Suite] = {s.name: s for s in (
    Suite("pythia", "EleutherAI/pythia-{70m,160m,410m,1b,1.4b,2.8b,6.9b,12b}[-deduped]", r"^step(\d+)$",
          PYTHIA_TOKENS_PER_STEP, tuple(PYTHIA_STEPS)),
    Suite("polypythias", "EleutherAI/pythia-{14m,31m,70m,160m,410m}-seed{1..9}", r"^step(\d+)$",
          PYTHIA_TOKENS_PER_STEP, tuple(PYTHIA_STEPS)),
    Suite("olmo2-7b", "allenai/OLMo-2-1124-7B (stage-1 branches)", r"^(?:stage1-)?step(\d+)-tokens(?P<tokens>\d+)B$",
          4_194_304, tokens_rounding=1e9),
    Suite("olmo", "allenai/OLMo-*, OLMo-2-* (any size; stage-1 branches)", r"^(?:stage1-)?step(\d+)-tokens\d+[KMBT]$",
          None),
    Suite("amber", "LLM360/Amber", r"^ckpt_(\d+)$", AMBER_TOKENS_PER_CKPT, tuple(range(360)), "ckpt_{:03d}", 1),
)}


def find(model: str, revisions, pattern: str | None = None) -> Suite | None:
    """The suite `revisions` names, None when it names revisions instead (all, a comma list, a file,
    a subfolder); ConfigError listing the suites for one word that is neither (a misspelt suite)."""
    if not isinstance(revisions, str):
        return None
    if revisions in SUITES:
        return SUITES[revisions]
    word = revisions.strip()
    if "," in word or word == "all" or Path(word).exists() or (Path(model) / word).is_dir():
        return None
    try:
        parse_revision(word, pattern)
    except InputError:
        raise ConfigError(f"unknown suite or revision name '{word}'",
                          f"use a suite ({', '.join(SUITES)}), all, a comma list of revisions or a file of them") from None
    return None


# ----------------------------------------------------------------------------- branch lists


def suite_revisions(model: str, suite: Suite) -> tuple[list[str], dict]:
    """The suite's revisions of `model` in step order and a record for the manifest:
    {"suite", "branches_from", "missing" (published steps the list lacks), "tokens_per_step"}."""
    names, where = branches(model)
    if names is None:
        if suite.grid is None:
            raise InputError(f"cannot list the branches of {model} (offline, and not in the huggingface_hub cache)",
                             f"run once online, or pass --revisions as a comma list of {suite.name} branches")
        names, where = [suite.name_format.format(n) for n in suite.grid], "published grid"
    mine = sorted((n for n in names if re.search(suite.pattern, n)), key=lambda n: suite.row(n)["step"])
    if not mine:
        raise InputError(f"{model} has no {suite.name} branches ({where}: {len(names)} others)",
                         f"check the suite: {suite.repos}")
    steps = [suite.row(n)["step"] for n in mine]
    missing = _missing(suite, steps)
    rec = {"suite": suite.name, "branches_from": where, "n_revisions": len(mine), "missing": missing,
           "tokens_per_step": suite.tokens_per_step}
    if missing:
        shown = ", ".join(str(s) for s in missing[:6]) + (f", ... ({len(missing)} in all)" if len(missing) > 6 else "")
        print(f"tokenclock: warning: {model} ({where}) lacks {len(missing)} step(s) of the {suite.name} schedule: "
              f"{shown}; traced without them, nothing interpolated", file=sys.stderr)
    return mine, rec


def _missing(suite: Suite, steps: list[int]) -> list[int]:
    """Published steps absent from `steps`: the grid's (with the offset), else multiples of the
    usual spacing between the first and last step present (OLMo saves every 1000 steps)."""
    have = set(steps)
    if suite.grid is not None:
        return [n + suite.step_offset for n in suite.grid if n + suite.step_offset not in have]
    if len(steps) < 3:
        return []
    spacing = Counter(b - a for a, b in zip(steps, steps[1:])).most_common(1)[0][0]
    if spacing <= 0:
        return []
    start = -(-steps[0] // spacing) * spacing
    return [s for s in range(start, steps[-1], spacing) if s not in have]
