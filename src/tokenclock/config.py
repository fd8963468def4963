"""Typed configuration: one dataclass per stage (defined in that stage's module), checked once.

Reads a YAML file (sections named for stages) plus `--set section.key=value` overrides; unknown
keys are errors with a suggestion. The resolved config is saved in the run's manifest.
"""
from __future__ import annotations

import dataclasses
import difflib
import typing
from dataclasses import field
from pathlib import Path
from typing import Any

import yaml

from tokenclock.errors import ConfigError
from tokenclock.stages.corpus.config import CorpusConfig
from tokenclock.stages.fit.config import FitConfig
from tokenclock.stages.reshape.config import ReshapeConfig
from tokenclock.stages.spectrum.config import SpectrumConfig
from tokenclock.stages.tokens.config import TokensConfig
from tokenclock.stages.trace.config import TraceConfig
from tokenclock.stages.train.config import ModelConfig, TrainConfig

PRESET_DIR = Path(__file__).parent / "presets"


# Section name -> its dataclass, in pipeline order (a stage's section is named for the stage).
SECTIONS: dict[str, type] = {"corpus": CorpusConfig, "tokens": TokensConfig, "model": ModelConfig,
                             "train": TrainConfig, "trace": TraceConfig, "fit": FitConfig,
                             "spectrum": SpectrumConfig, "reshape": ReshapeConfig}


@dataclasses.dataclass
class Config:
    """A whole pipeline: one section per stage (a section left None gets its defaults)."""

    corpus: CorpusConfig = field(default_factory=CorpusConfig)
    """`tokenclock corpus`: the sources and the split by document."""
    tokens: TokensConfig = field(default_factory=TokensConfig)
    """`tokenclock tokenize`: the tokenizer and the token streams."""
    model: ModelConfig = field(default_factory=ModelConfig)
    """The model trained (a preset or its shape)."""
    train: TrainConfig = field(default_factory=TrainConfig)
    """`tokenclock train`: steps, optimizer, schedule and the log-spaced checkpoints."""
    trace: TraceConfig = field(default_factory=TraceConfig)
    """`tokenclock trace`: which validation tokens are traced, and how."""
    fit: FitConfig = field(default_factory=FitConfig)
    """`tokenclock fit`: the sigmoid learning events of each token."""
    spectrum: SpectrumConfig = field(default_factory=SpectrumConfig)
    """`tokenclock spectrum`: the learning-time spectrum and the reconstruction."""
    reshape: ReshapeConfig = field(default_factory=ReshapeConfig)
    """`tokenclock reshape`: a data schedule for a new run from a reference run."""
    seed: int = 0
    """Seeds the model's initialisation, the batch order and the validation windows."""

    def __post_init__(self) -> None:
        for name, cls in SECTIONS.items():
            if getattr(self, name) is None:
                setattr(self, name, cls())

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _coerce(value: Any, typ: Any, where: str) -> Any:
    """Check/convert one value against a dataclass field type (str, int, float, bool, lists, Optional)."""
    origin = typing.get_origin(typ)
    args = typing.get_args(typ)
    if typ is Any:
        return value
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        if value is None and type(None) in args:
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _coerce(value, a, where)
            except ConfigError as e:
                errors.append(e)
        raise errors[0] if errors else ConfigError(f"{where}: bad value {value!r}")
    if origin in (list, tuple):
        if isinstance(value, str):
            value = yaml.safe_load(value) if value.strip().startswith("[") else [v for v in value.split(",") if v]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}", "write it as [a, b, c]")
        inner = args[0] if args else Any
        out = [_coerce(v, inner, where) for v in value]
        return out if origin is list else tuple(out)
    if typ is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
            return value.lower() in ("true", "1", "yes")
        raise ConfigError(f"{where}: expected true/false, got {value!r}")
    if typ is int:
        if isinstance(value, bool):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                return int(float(value)) if float(value).is_integer() else int(value)
            except ValueError:
                pass
        raise ConfigError(f"{where}: expected an integer, got {value!r}")
    if typ is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
        raise ConfigError(f"{where}: expected a number, got {value!r}")
    if typ is str:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
        raise ConfigError(f"{where}: expected a string, got {value!r}")
    return value


def build_section(cls: type, values: dict, section: str) -> Any:
    """Instantiate a stage dataclass from a dict, refusing unknown keys and wrong types."""
    if values is None:
        values = {}
    if not isinstance(values, dict):
        raise ConfigError(f"config section '{section}' must be a mapping, got {type(values).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for key, value in values.items():
        if key not in fields:
            close = difflib.get_close_matches(key, list(fields), n=1)
            hint = f"did you mean '{section}.{close[0]}'?" if close else \
                f"known keys: {', '.join(sorted(fields))}"
            raise ConfigError(f"unknown config key '{section}.{key}'", hint)
        kwargs[key] = _coerce(value, hints[key], f"{section}.{key}")
    try:
        return cls(**kwargs)
    except ConfigError:
        raise
    except (TypeError, ValueError) as e:
        raise ConfigError(f"config section '{section}': {e}") from None


def parse_overrides(pairs: list[str] | None) -> dict:
    """['train.steps=100', 'model.preset=tiny'] -> nested dict, values parsed as YAML scalars."""
    out: dict = {}
    for pair in pairs or []:
        if "=" not in pair:
            raise ConfigError(f"--set {pair!r} is not key=value", "write e.g. --set train.steps=200")
        key, raw = pair.split("=", 1)
        try:
            value = yaml.safe_load(raw) if raw != "" else ""
        except yaml.YAMLError:
            value = raw
        node = out
        parts = key.strip().split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        node[parts[-1]] = value
    return out


def merge(base: dict, over: dict) -> dict:
    """`over` merged into `base` section by section (nested dicts merge, other values replace)."""
    out = dict(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = merge(out[k], v)
        else:
            out[k] = v
    return out


def resolve_config_path(path: str | Path) -> Path:
    """A file path, or the name of a built-in preset: `demo`, `demo.yaml` or `configs/demo.yaml`
    (the repository's configs/ is the package's presets/ folder)."""
    p = Path(path)
    if p.is_file():
        return p
    preset = PRESET_DIR / f"{p.stem}.yaml"
    if preset.is_file() and p.parent in (Path("."), Path("configs")):
        return preset
    presets = sorted(q.stem for q in PRESET_DIR.glob("*.yaml"))
    raise ConfigError(f"config file {path} not found",
                      f"pass a YAML file or a preset name: {', '.join(presets)}")


def load_config(path: str | Path | None = None, overrides: list[str] | dict | None = None) -> Config:
    """Load a YAML config (or preset name) and apply overrides; every key is checked."""
    data: dict = {}
    if path is not None:
        p = resolve_config_path(path)
        try:
            data = yaml.safe_load(p.read_text()) or {}
        except yaml.YAMLError as e:
            raise ConfigError(f"{p} is not valid YAML: {str(e).splitlines()[0]}") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{p} must hold a mapping of sections (corpus, model, train, ...)")
    over = overrides if isinstance(overrides, dict) else parse_overrides(overrides)
    data = merge(data, over)
    return config_from_dict(data)


def config_from_dict(data: dict) -> Config:
    known = set(SECTIONS) | {"seed"}
    for key in data:
        if key not in known:
            close = difflib.get_close_matches(key, sorted(known), n=1)
            raise ConfigError(f"unknown config section '{key}'",
                              f"did you mean '{close[0]}'?" if close else
                              f"known sections: {', '.join(sorted(known))}")
    kwargs = {name: build_section(cls, data.get(name) or {}, name) for name, cls in SECTIONS.items()}
    seed = _coerce(data.get("seed", 0), int, "seed")
    return Config(seed=seed, **kwargs)
