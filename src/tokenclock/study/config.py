"""A study's configuration: the grid (`study:` section, StudyConfig) and the base run config
(`base:`), read from a YAML file or preset with `--set` overrides, and the budgets and models it
asks for, checked once.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import yaml

from tokenclock.config import build_section, config_from_dict, merge, parse_overrides, resolve_config_path
from tokenclock.errors import ConfigError, DataError
from tokenclock.rundir import AVG, RAW, WEIGHT_SERIES
from tokenclock.stages.trace.npz import MIN_POINTS  # axis points a fit needs
from tokenclock.stages.train.config import PRESETS
from tokenclock.stages.train.model import preset_params
from tokenclock.study.fitrules import FIT_RULES

MODES = ("branches", "full")


@dataclass
class StudyConfig:
    """The grid (section `study` of a study config)."""

    models: list[str] = field(default_factory=list)
    """Model presets (tokenclock.stages.train.model.PRESETS, `tokenclock presets`): the M axis, >= 4 distinct sizes."""
    budgets_steps: list[int] = field(default_factory=list)
    """Token budgets in optimizer steps (tokens = steps x batch_size x seq_len): the D axis, >= 4."""
    budgets_tokens: list[int] = field(default_factory=list)
    """Token budgets in tokens, rounded to whole steps; give this or budgets_steps."""
    seeds: list[int] = field(default_factory=lambda: [0])
    """One run per seed; axes average the per-token final losses over seeds, and with two or more
    seeds each axis records its replicate ceiling (the R^2 between seeds' measured -dL/du)."""
    seed_kind: str = "full"
    """What a seed changes: full (the run's seed: initial weights and data order) or data
    (train.data_seed only: same initial weights, another batch order, as PolyPythias separate
    the two; the replicate ceiling then measures data-order noise alone)."""
    mode: str = "branches"
    """branches: WSD cooldown branches off one stable run per model (cheap); full: one run per
    budget with the base schedule (the classical grid)."""
    decay_fraction: float = 0.2
    """branches: share of each budget spent decaying the lr (train.decay_fraction of every run)."""
    compare_full_steps: list[int] = field(default_factory=list)
    """branches: budgets (steps) also trained as full runs with the base schedule, to measure the
    branch-vs-full difference (study.json: branch_vs_full); not used for the axes."""
    bootstrap: int = 100
    """Bootstrap resamples of runs for the Chinchilla intervals."""
    weights: list[str] = field(default_factory=lambda: [RAW])
    """Weight series whose finals make the D and M axes: raw (finals/, axes/) and, with
    train.avg: ema in the base config, avg (each run's averaged final, finals_avg/, axes_avg/)."""
    axis_fit_rules: list[str] = field(default_factory=lambda: ["two_events"])
    """Fit rules tried on the sparse D and M axes (study/fitrules.py: two_events, one_event, wide,
    bic_small_k); with more than one, each axis kind (D, M) uses the rule whose leave-one-out R^2
    (each axis point predicted by events fitted on the others) is highest on average over the first
    weight series, and study.json records every rule's scores (fit_rules)."""

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ConfigError(f"unknown study.mode '{self.mode}'", "use branches or full")
        for m in self.models:
            if m not in PRESETS:
                raise ConfigError(f"unknown model preset '{m}' in study.models",
                                  f"choose from {', '.join(PRESETS)}")
        if self.budgets_steps and self.budgets_tokens:
            raise ConfigError("give study.budgets_steps or study.budgets_tokens, not both")
        if any(b < 1 for b in self.budgets_steps + self.budgets_tokens):
            raise ConfigError("study budgets must be >= 1")
        for name in ("budgets_steps", "budgets_tokens"):
            b = getattr(self, name)
            bad = next((i for i in range(1, len(b)) if b[i] <= b[i - 1]), None)
            if bad is not None:
                raise ConfigError(f"study.{name} must increase: {b[bad]} follows {b[bad - 1]}",
                                  f"list each budget once, smallest first, e.g. {sorted(set(b))}")
        if not 0 < self.decay_fraction < 1:
            raise ConfigError(f"study.decay_fraction must be in (0, 1), got {self.decay_fraction}")
        if self.seed_kind not in ("full", "data"):
            raise ConfigError(f"unknown study.seed_kind '{self.seed_kind}'", "use full or data")
        if len(set(self.seeds)) != len(self.seeds):
            raise ConfigError(f"study.seeds has a repeated seed: {self.seeds}", "list each seed once")
        if not self.seeds:
            raise ConfigError("study.seeds is empty", "write seeds: [0]")
        if len(set(self.models)) < MIN_POINTS:
            raise DataError(f"the M axis has {len(set(self.models))} model sizes; fitting needs at least "
                            f"{MIN_POINTS}", "add models to study.models (e.g. from `tokenclock presets`)")
        n_b = len(set(self.budgets_steps or self.budgets_tokens))
        if n_b < MIN_POINTS:
            raise DataError(f"the D axis has {n_b} token budgets; fitting needs at least {MIN_POINTS}",
                            "add budgets to study.budgets_steps or study.budgets_tokens")
        if self.bootstrap < 0:
            raise ConfigError("study.bootstrap must be >= 0")
        if not self.weights or any(w not in WEIGHT_SERIES for w in self.weights) \
                or len(set(self.weights)) != len(self.weights):
            raise ConfigError(f"study.weights must list raw and/or avg once each, got {self.weights}",
                              "e.g. weights: [raw, avg] (avg needs train.avg: ema)")
        bad = [r for r in self.axis_fit_rules if r not in FIT_RULES]
        if bad or not self.axis_fit_rules or len(set(self.axis_fit_rules)) != len(self.axis_fit_rules):
            raise ConfigError(f"study.axis_fit_rules: unknown or repeated rule in {self.axis_fit_rules}",
                              f"list each of {', '.join(FIT_RULES)} at most once")


@dataclass
class Study:
    """A study: its grid and the base config every run of it starts from."""

    study: StudyConfig
    """The grid."""
    base: dict
    """The `base:` section, a normal tokenclock config as a dict."""

    def run_config(self, seed: int, model: str, train_over: dict):
        """The config of one run: `seed` is the run's seed, or (study.seed_kind data) its
        train.data_seed under the base config's seed."""
        if self.study.seed_kind == "data":
            return config_from_dict(merge(self.base, {"model": {"preset": model},
                                                       "train": {**train_over, "data_seed": seed}}))
        return config_from_dict(merge(self.base, {"seed": seed, "model": {"preset": model},
                                                   "train": train_over}))

    @property
    def base_config(self):
        return config_from_dict(self.base)

    def budgets(self) -> list[int]:
        """Budgets in steps, sorted, unique."""
        tc = self.base_config.train
        if self.study.budgets_steps:
            return sorted(set(self.study.budgets_steps))
        per = tc.batch_size * tc.seq_len
        steps = sorted({max(1, int(round(t / per))) for t in self.study.budgets_tokens})
        if len(steps) < MIN_POINTS:
            raise DataError(f"study.budgets_tokens round to {len(steps)} distinct step counts at "
                            f"{per} tokens per step", "spread the budgets further apart")
        return steps

    def models(self) -> list[str]:
        """Models sorted by non-embedding parameters."""
        ms = sorted(set(self.study.models), key=preset_params)
        sizes = [preset_params(m) for m in ms]
        if len(set(sizes)) < len(sizes):
            raise ConfigError("two study.models have the same parameter count", "pick distinct sizes")
        return ms


def load_study(path: str | Path, overrides: list[str] | dict | None = None) -> Study:
    """A study config file (or preset name, e.g. study-tiny) plus `--set` overrides: keys under
    `study.` set the grid, `base.x.y` or plain `x.y` set the base run config."""
    p = resolve_config_path(path)
    try:
        data = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{p} is not valid YAML: {str(e).splitlines()[0]}") from None
    if not isinstance(data, dict) or "study" not in data:
        raise ConfigError(f"{p} has no `study:` section", "a study config holds `study:` (the grid) "
                          "and `base:` (a normal tokenclock config)")
    unknown = set(data) - {"study", "base"}
    if unknown:
        raise ConfigError(f"unknown study config section '{sorted(unknown)[0]}'",
                          "a study config has only `study:` and `base:`")
    over = overrides if isinstance(overrides, dict) else parse_overrides(overrides)
    over = dict(over)
    s_over = over.pop("study", {})
    b_over = over.pop("base", {})
    b_over = merge(over, b_over)  # plain train.x=... means base.train.x
    study = build_section(StudyConfig, merge(data.get("study") or {}, s_over), "study")
    base = merge(data.get("base") or {}, b_over)
    cfg = config_from_dict(base)  # check every key of the base config once, up front
    st = Study(study=study, base=base)
    first, warm = st.budgets()[0], cfg.train.warmup_steps
    if first < warm:
        raise ConfigError(f"the smallest study budget ({first} steps) is shorter than train.warmup_steps "
                          f"({warm})", f"set base.train.warmup_steps <= {first} or drop the smaller budgets")
    if AVG in study.weights and cfg.train.avg != "ema":
        raise ConfigError("study.weights lists avg but the base config trains without averaged weights",
                          "set base.train.avg: ema, or weights: [raw]")
    return st
