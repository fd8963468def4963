"""The three modes of a trace and which arguments go with each: a tokenclock run (RUN), one model's
revisions (model + revisions: the T axis) or several models at one revision (models + revision:
the M axis). `trace_checkpoints` checks the combination once and runs the trace that applies;
`tokenclock trace` maps its flags onto it, one argument per flag.
"""
from __future__ import annotations

from pathlib import Path

from tokenclock.errors import ConfigError
from tokenclock.stages.trace.config import TraceConfig
from tokenclock.stages.trace.series import trace_models, trace_revisions
from tokenclock.stages.trace.stage import trace


def trace_mode(run: str | Path | None = None, *, model: str | None = None,
               revisions: str | list[str] | None = None, models: str | list[str] | None = None,
               revision: str | None = None, out: str | Path | None = None,
               tokens_per_step: int | None = None, step_pattern: str | None = None,
               step_map: str | Path | None = None) -> str:
    """"run", "revisions" or "models"; ConfigError (with the fix) for a combination that does not
    go together. Without model/models the series arguments are not looked at (own run)."""
    if not (model or models):
        if run is None:
            raise ConfigError("trace needs a run directory, or --model NAME_OR_PATH / --models A,B,C with --out DIR",
                              "e.g. tokenclock trace runs/demo, or tokenclock trace --model EleutherAI/pythia-70m "
                              "--revisions pythia --text builtin --out runs/pythia-70m")
        return "run"
    if (out or run) is None:
        raise ConfigError("--model/--models need --out DIR", "e.g. --out runs/pythia-70m")
    if model and models:
        raise ConfigError("pass --model (a series of revisions) or --models (several models), not both")
    if model:
        if revision is not None:
            raise ConfigError("--revision goes with --models; with --model use --revisions")
        return "revisions"
    if revisions or tokens_per_step or step_pattern or step_map:
        raise ConfigError("--revisions/--tokens-per-step/--step-pattern/--step-map go with --model",
                          "with --models pass one --revision")
    return "models"


def trace_checkpoints(run: str | Path | None = None, cfg: TraceConfig | None = None, *,
                      model: str | None = None, revisions: str | list[str] | None = None,
                      models: str | list[str] | None = None, revision: str | None = None,
                      text: str = "builtin", out: str | Path | None = None,
                      tokens_per_step: int | None = None, step_pattern: str | None = None,
                      step_map: str | Path | None = None, skip_bad: bool = False,
                      progress: bool = True) -> dict:
    """Trace a tokenclock run (`run`), or a checkpoint series into `out` (default `run`): `model`
    with `revisions` (hub revisions or local checkpoint folders; see `trace_revisions`) or
    `models` (a list or a comma list) with `revision` (see `trace_models`). Returns the trace's
    summary (trace/meta.json plus tokens_per_second)."""
    mode = trace_mode(run, model=model, revisions=revisions, models=models, revision=revision, out=out,
                      tokens_per_step=tokens_per_step, step_pattern=step_pattern, step_map=step_map)
    if mode == "run":
        return trace(run, cfg, progress=progress)
    out = out or run
    if mode == "revisions":
        return trace_revisions(out, model, revisions, text, cfg, tokens_per_step=tokens_per_step,
                               step_pattern=step_pattern, step_map=step_map, skip_bad=skip_bad,
                               progress=progress)
    if isinstance(models, str):
        models = [m.strip() for m in models.split(",") if m.strip()]
    return trace_models(out, list(models), revision, text, cfg, skip_bad=skip_bad, progress=progress)
