"""The `tokenclock` command: a thin layer that parses arguments, calls one library function per
stage, and turns TokenclockError into one line on stderr and a non-zero exit code.

Each command has a `_add_<command>` function that registers its flags and a `cmd_<command>`
that runs it. Flags that set config keys are `--set` overrides (merged before the config is
loaded, so every check runs once, in the config dataclasses).
"""
from __future__ import annotations

import argparse
import errno
import json
import sys

from tokenclock.config import PRESET_DIR, load_config, merge, parse_overrides
from tokenclock.errors import ConfigError, TokenclockError
from tokenclock.pipeline import demo, fit_npz, prepare, train
from tokenclock.rundir import RunDir
from tokenclock.stages.data.corpus import build_corpus, count_documents
from tokenclock.stages.fit.stage import fit
from tokenclock.stages.report.stage import report
from tokenclock.stages.reshape.profiles import STRATEGIES
from tokenclock.stages.reshape.stage import reshape
from tokenclock.stages.spectrum.replicate import replicate
from tokenclock.stages.spectrum.stage import spectrum
from tokenclock.stages.trace.modes import trace_checkpoints
from tokenclock.stages.trace.npz import export_npz
from tokenclock.stages.trace.suites import SUITES
from tokenclock.stages.train.model import PRESETS, preset_params
from tokenclock.study.config import load_study
from tokenclock.study.stage import study


def _config(args, flags: dict | None = None, defaults: dict | None = None):
    """The config file plus overrides: `defaults` < `--set` < `flags` (a command's own flags)."""
    over = merge(defaults or {}, parse_overrides(getattr(args, "set", None)))
    return load_config(getattr(args, "config", None), merge(over, flags or {}))


def _flags(args, section: str, names: tuple[str, ...]) -> dict:
    """{section: {name: value}} for the flags the user gave (argparse dest = config key)."""
    return {section: {n: getattr(args, n) for n in names if getattr(args, n) is not None}}


def _print(obj) -> None:
    print(json.dumps(obj, indent=2, default=str))


def _common(sp, config: bool = True) -> None:
    if config:
        sp.add_argument("--config", help="YAML config file or preset name (tiny, demo, gpu)")
        sp.add_argument("--set", action="append", metavar="KEY=VALUE",
                        help="override a config key, e.g. --set train.steps=500 (repeatable)")
    sp.add_argument("--quiet", action="store_true", help="no progress bars")


# ----------------------------------------------------------------------------- data


def _add_corpus(sub) -> None:
    sp = sub.add_parser("corpus", help="assemble the corpus (built-in by default) and split by document")
    sp.add_argument("--source", action="append", help="text file, folder, .jsonl, .parquet or hf:NAME (repeatable)")
    sp.add_argument("--synthetic", metavar="NAME", help="a built-in synthetic corpus with known learning "
                    "times (facts): the source synthetic:NAME")
    sp.add_argument("--out", help="run directory to write corpus/ into (omit to just build and count)")
    _common(sp)
    sp.set_defaults(func=cmd_corpus)


def cmd_corpus(args) -> int:
    sources = (args.source or []) + ([f"synthetic:{args.synthetic}"] if args.synthetic else [])
    cfg = _config(args, defaults={"corpus": {"sources": sources}} if sources else None)
    if args.out is None:
        _print(count_documents(cfg.corpus))
        return 0
    _print(build_corpus(args.out, cfg.corpus, progress=not args.quiet))
    return 0


def _add_tokenize(sub) -> None:
    sp = sub.add_parser("tokenize", help="train/load the tokenizer and write token streams")
    sp.add_argument("--out", required=True, help="run directory")
    _common(sp)
    sp.set_defaults(func=cmd_tokenize)


def cmd_tokenize(args) -> int:
    _print(prepare(args.out, _config(args), progress=not args.quiet))
    return 0


def _add_train(sub) -> None:
    sp = sub.add_parser("train", help="train a model with a dense log-spaced checkpoint series",
                        description="Train (or resume) the run in --out. With --zoom A:B, then replay steps "
                        "A..B of the trained run from its newest kept training state at or before A, bit for "
                        "bit, and add the checkpoints of a denser schedule inside [A, B] to its series.")
    sp.add_argument("--out", required=True, help="run directory")
    sp.add_argument("--zoom", metavar="A:B", help="replay steps A..B with denser checkpoints (train.zoom)")
    sp.add_argument("--zoom-ckpt-per-decade", type=int, metavar="N",
                    help="checkpoints per decade inside the zoom (train.zoom_ckpt_per_decade; "
                    "default 4x train.ckpt_per_decade)")
    _common(sp)
    sp.set_defaults(func=cmd_train)


def _zoom_interval(text: str | None) -> list[int] | None:
    """--zoom A:B -> [A, B] (the checks of the interval are TrainConfig's)."""
    if text is None:
        return None
    parts = text.split(":")
    if len(parts) != 2 or not all(p.strip().lstrip("-").isdigit() for p in parts):
        raise ConfigError(f"--zoom {text!r} is not A:B", "give two steps, e.g. --zoom 16:256")
    return [int(p) for p in parts]


def cmd_train(args) -> int:
    flags = {"train": {k: v for k, v in (("zoom", _zoom_interval(args.zoom)),
                                         ("zoom_ckpt_per_decade", args.zoom_ckpt_per_decade)) if v is not None}}
    _print(train(args.out, _config(args, flags=flags), progress=not args.quiet))
    return 0


# ----------------------------------------------------------------------------- trace


TRACE_FLAGS = ("n_seqs", "seq_len", "batch_size", "seed", "dtype", "device", "weights")  # -> trace.<flag>
WEIGHTS_HELP = "weight series: raw (default) or avg (the averaged weights of train.avg)"


def _add_trace(sub) -> None:
    sp = sub.add_parser("trace", help="per-token loss of validation tokens at every checkpoint",
                        description="Trace a tokenclock run (RUN), or any checkpoint series: --model with "
                        "--revisions (hub revisions or local checkpoint folders; T axis) or --models with "
                        "--revision (M axis), into --out DIR.")
    sp.add_argument("run", nargs="?", help="run directory (a tokenclock run; omit with --model/--models)")
    sp.add_argument("--model", help="hub name (EleutherAI/pythia-70m) or local folder of checkpoint folders")
    sp.add_argument("--revisions", help=f"a suite ({', '.join(SUITES)}), all, a comma list (step0,step1000) or a "
                    "file with one revision per line; local: subfolder names (default all)")
    sp.add_argument("--models", help="comma list of hub names or folders: the M axis (n_params)")
    sp.add_argument("--revision", help="with --models: the revision (hub) or subfolder (local) of each")
    sp.add_argument("--text", default="builtin", help="validation text: a file, a folder or builtin "
                    "(the built-in corpus's validation split; default)")
    sp.add_argument("--out", help="run directory to write trace/ into (with --model/--models)")
    sp.add_argument("--tokens-per-step", type=int, help="tokens_seen = step x this (Pythia: 2097152)")
    sp.add_argument("--step-pattern", help="regex whose first group is the step, for revision/folder names "
                    "(default finds stepN, step_N, checkpoint-N, global_stepN; OLMo stepN-tokensNB)")
    sp.add_argument("--step-map", help="CSV (revision,step[,tokens_seen]) or JSON {revision: step}")
    sp.add_argument("--skip-bad", action="store_true", help="skip (and record) missing or corrupt checkpoints, and "
                    "copies of other checkpoints' weights (the latest of each group is kept)")
    sp.add_argument("--n-seqs", type=int, help="validation sequences (trace.n_seqs)")
    sp.add_argument("--seq-len", type=int, help="tokens per sequence (trace.seq_len; series default 256)")
    sp.add_argument("--batch-size", type=int, help="sequences per forward pass (trace.batch_size)")
    sp.add_argument("--seed", type=int, help="which sequences (trace.seed)")
    sp.add_argument("--dtype", choices=["auto", "bf16", "fp32"], help="trace.dtype (auto: bf16 on CUDA)")
    sp.add_argument("--device", help="trace.device: auto, cpu, cuda, cuda:1")
    sp.add_argument("--weights", choices=["raw", "avg"], help="trace.weights: " + WEIGHTS_HELP)
    _common(sp)
    sp.set_defaults(func=cmd_trace)


def cmd_trace(args) -> int:
    cfg = _config(args, flags=_flags(args, "trace", TRACE_FLAGS))
    _print(trace_checkpoints(args.run, cfg.trace, model=args.model, revisions=args.revisions,
                             models=args.models, revision=args.revision, text=args.text, out=args.out,
                             tokens_per_step=args.tokens_per_step, step_pattern=args.step_pattern,
                             step_map=args.step_map, skip_bad=args.skip_bad, progress=not args.quiet))
    return 0


# ----------------------------------------------------------------------------- fit, spectrum, report


def _add_fit(sub) -> None:
    sp = sub.add_parser("fit", help="fit sigmoid learning events to every token trajectory")
    sp.add_argument("run", nargs="?", help="run directory")
    sp.add_argument("--npz", help="a losses.npz (axis_values, loss_matrix, axis_name) or a dataset directory "
                    "(export --hf-dataset; checksums verified) instead of a run")
    sp.add_argument("--out", help="output directory for --npz")
    sp.add_argument("--uncertainty", action="store_true", default=None,  # None: as the config says
                    help="standard errors of each learning time mu (events column mu_se)")
    sp.add_argument("--max-events", type=int, choices=(0, 1, 2), help="most sigmoid events per token")
    sp.add_argument("--weights", choices=["raw", "avg"], default="raw", help=WEIGHTS_HELP)
    _common(sp)
    sp.set_defaults(func=cmd_fit)


def cmd_fit(args) -> int:
    cfg = _config(args, flags=_flags(args, "fit", ("uncertainty", "max_events")))
    if args.npz:
        if not args.out:
            raise ConfigError("--npz needs --out DIR", "e.g. tokenclock fit --npz losses.npz --out fits/")
        _print(fit_npz(args.npz, args.out, cfg.fit, progress=not args.quiet))
    elif args.run is None:
        raise ConfigError("fit needs a run directory or --npz FILE --out DIR")
    else:
        _print(fit(RunDir(args.run, args.weights), cfg.fit, progress=not args.quiet))
    return 0


def _add_spectrum(sub) -> None:
    sp = sub.add_parser("spectrum", help="learning-time spectrum and reconstruction of -dL/dln x")
    sp.add_argument("run", help="run directory")
    sp.add_argument("--weights", choices=["raw", "avg"], default="raw", help=WEIGHTS_HELP)
    sp.add_argument("--replicate", metavar="RUN2", help="a replicate of RUN (another train.data_seed, same "
                    "init and traced tokens, already fitted): the replicate ceiling beside the R^2")
    _common(sp)
    sp.set_defaults(func=cmd_spectrum)


def cmd_spectrum(args) -> int:
    run = RunDir(args.run, args.weights)
    cfg = _config(args).spectrum
    if args.replicate:
        _print(replicate(run, RunDir(args.replicate, args.weights), cfg, progress=not args.quiet))
    else:
        _print(spectrum(run, cfg, progress=not args.quiet))
    return 0


def _add_report(sub) -> None:
    sp = sub.add_parser("report", help="write RUN/report/index.html")
    sp.add_argument("run", help="run directory")
    sp.add_argument("--weights", choices=["raw", "avg"], default="raw",
                    help=WEIGHTS_HELP + "; the raw report shows an averaged series beside it")
    sp.set_defaults(func=cmd_report)


def cmd_report(args) -> int:
    print(f"report: {report(RunDir(args.run, args.weights))}")
    return 0


def _add_explore(sub) -> None:
    sp = sub.add_parser("explore", help="browse runs in a local web page: tokens, trajectories, spectrum, filters",
                        description="Serve a read-only page over one or more run-like directories (a run, a "
                        "traced series, a study's axes/<name>, an imported losses.npz) on HOST:PORT. On a remote "
                        "machine: ssh -L 8765:127.0.0.1:8765 HOST, then open http://127.0.0.1:8765/ locally.")
    sp.add_argument("runs", nargs="+", metavar="RUN", help="run directories (two or more: compare view)")
    sp.add_argument("--port", type=int, default=8765, help="port (default 8765; 0 picks a free one)")
    sp.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    sp.add_argument("--no-browser", action="store_true", help="print the URL without opening a browser")
    sp.set_defaults(func=cmd_explore)


def cmd_explore(args) -> int:
    from tokenclock.explore.server import serve  # starlette, uvicorn and duckdb load here, not at import

    serve(args.runs, host=args.host, port=args.port, open_browser=not args.no_browser)
    return 0


# ----------------------------------------------------------------------------- reshape, export


RESHAPE_FLAGS = ("strategy", "pool_size", "window", "mix", "sharpness", "max_ckpts", "seed", "steps",
                 "batch_size", "seq_len", "device")  # -> reshape.<flag>


def _add_reshape(sub) -> None:
    sp = sub.add_parser("reshape", help="a learnability-aware data schedule for a new run, from a reference run",
                        description="Trace a seeded pool of training windows through REF's checkpoints, fit "
                        "their learning events, and write SCHEDULE/offsets.npy for "
                        "`tokenclock train --set train.data_schedule=SCHEDULE`.")
    sp.add_argument("run", help="reference run directory (trained; a smaller or shorter proxy is fine)")
    sp.add_argument("--out", required=True, help="schedule directory to write")
    sp.add_argument("--strategy", choices=list(STRATEGIES), help="default learnable-now; token-learnable "
                    "also writes per-token loss weights (SCHEDULE/weights.npy)")
    sp.add_argument("--pool-size", type=int, help="training windows traced in the reference (default 1024)")
    sp.add_argument("--window", type=float, help="sampling window width, a fraction (default 0.2)")
    sp.add_argument("--mix", type=float, help="share of each batch kept from the uniform order (default 0.5)")
    sp.add_argument("--sharpness", type=float, help="pool weights ** sharpness (default 1)")
    sp.add_argument("--max-ckpts", type=int, help="reference checkpoints traced (default 16)")
    sp.add_argument("--seed", type=int, help="schedule seed (default: the reference's seed)")
    sp.add_argument("--steps", type=int, help="new run's train.steps (default: the reference's)")
    sp.add_argument("--batch-size", type=int, help="new run's train.batch_size (default: the reference's)")
    sp.add_argument("--seq-len", type=int, help="new run's train.seq_len (default: the reference's)")
    sp.add_argument("--device", help="auto, cpu, cuda")
    _common(sp)  # the flags above are reshape.<key>; --set reshape.n_bins=... reaches the others
    sp.set_defaults(func=cmd_reshape)


def cmd_reshape(args) -> int:
    cfg = _config(args, flags=_flags(args, "reshape", RESHAPE_FLAGS))
    _print(reshape(args.run, args.out, cfg.reshape, progress=not args.quiet))
    return 0


def _add_export(sub) -> None:
    sp = sub.add_parser("export", help="export a run's trace as the paper's losses.npz or a Hugging Face dataset")
    sp.add_argument("run", help="run directory")
    sp.add_argument("--npz", help="output .npz path (one axis)")
    sp.add_argument("--hf-dataset", metavar="DIR", help="a new directory: every axis's losses.npz, parquet tables, "
                    "manifest.yaml with sha256s and a dataset card (datasets.load_dataset(DIR) reads it)")
    sp.add_argument("--axis", default="step", help="with --npz: axis column: step, tokens_seen or cum_lr")
    sp.add_argument("--license", default="cc-by-4.0", help="with --hf-dataset: the card's licence (default cc-by-4.0)")
    sp.set_defaults(func=cmd_export)


def cmd_export(args) -> int:
    if (args.npz is None) == (args.hf_dataset is None):
        raise ConfigError("export needs one of --npz FILE or --hf-dataset DIR")
    if args.hf_dataset:
        from tokenclock.export import export_dataset

        cmd = f"tokenclock export {args.run} --hf-dataset {args.hf_dataset} --license {args.license}"
        man = export_dataset(args.run, args.hf_dataset, license=args.license, command=cmd)
        _print({"dataset": args.hf_dataset, "axes": man["axes"], "files": [f["path"] for f in man["files"]]})
        return 0
    print(f"wrote {export_npz(args.run, args.npz, axis=args.axis)}")
    return 0


def _add_import(sub) -> None:
    sp = sub.add_parser("import", help="read a dataset written by `export --hf-dataset` into a run (checksums first)")
    sp.add_argument("dataset", help="dataset directory (manifest.yaml, <axis>/losses.npz)")
    sp.add_argument("--out", required=True, help="run directory to write trace/ into; then `tokenclock fit OUT`")
    sp.add_argument("--axis", help="which axis's losses.npz (default: the first in the manifest)")
    sp.set_defaults(func=cmd_import)


def cmd_import(args) -> int:
    from tokenclock.export import import_dataset

    _print(import_dataset(args.dataset, args.out, axis=args.axis))
    return 0


# ----------------------------------------------------------------------------- demo, study, presets


def _add_demo(sub) -> None:
    sp = sub.add_parser("demo", help="the whole T-axis study on the built-in corpus")
    sp.add_argument("--out", default="runs/demo", help="run directory (default runs/demo)")
    sp.add_argument("--config", default="demo", help="config preset or file (default demo)")
    sp.add_argument("--set", action="append", metavar="KEY=VALUE")
    sp.add_argument("--quiet", action="store_true")
    sp.set_defaults(func=cmd_demo)


def cmd_demo(args) -> int:
    demo(args.out, config=args.config, overrides=args.set, progress=not args.quiet)
    return 0


def _add_study(sub) -> None:
    sp = sub.add_parser("study", help="a grid of runs (models x budgets x seeds): D and M axes, "
                        "Chinchilla baseline, study report",
                        description="Train (or resume) every run of a study config, build the D and M "
                        "axes from their final per-token losses, fit and reconstruct along T, D and M.")
    sp.add_argument("config", help="study YAML (study: + base: sections) or preset (study-tiny, study-cpu, study-gpu)")
    sp.add_argument("--out", required=True, help="study directory")
    sp.add_argument("--set", action="append", metavar="KEY=VALUE",
                    help="override, e.g. --set study.seeds=[0,1] or --set train.threads=1 (base config)")
    sp.add_argument("--only", help="job arrays: 'prepare' (shared inputs only) or a model index K "
                    "(train that model's runs only); a last call without --only builds the axes")
    sp.add_argument("--quiet", action="store_true", help="no progress bars")
    sp.set_defaults(func=cmd_study)


def cmd_study(args) -> int:
    man = study(args.out, load_study(args.config, args.set), progress=not args.quiet, only=args.only)
    if args.only is not None:
        _print({"study": args.out, "only": args.only,
                "runs": {k: v.get("status") for k, v in man.get("runs", {}).items()}})
        return 0
    _print({"study": args.out, "summary": man.get("summary"), "chinchilla": man.get("chinchilla"),
            "branch_vs_full": man.get("branch_vs_full"), "n_failed": man.get("n_failed"),
            "seconds": man.get("seconds"), "report": f"{args.out}/report/index.html"})
    failed = [n for n, r in man["runs"].items() if r.get("status") == "failed"]
    if failed:
        print(f"tokenclock: error: {len(failed)} run(s) failed ({', '.join(failed[:4])}); the axes use the "
              "rest (see study.json)", file=sys.stderr)
        return 8
    return 0


def _add_presets(sub) -> None:
    sp = sub.add_parser("presets", help="list model and config presets")
    sp.set_defaults(func=cmd_presets)


def cmd_presets(args) -> int:
    print("model presets (non-embedding parameters):")
    for name in PRESETS:
        h, L, nh, nkv, inter = PRESETS[name]
        print(f"  {name:<12} {preset_params(name):>13,}  hidden={h} layers={L} heads={nh} kv_heads={nkv} mlp={inter}")
    print("config presets: " + ", ".join(sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))))
    return 0


# ----------------------------------------------------------------------------- the command


COMMANDS = (_add_corpus, _add_tokenize, _add_train, _add_trace, _add_fit, _add_spectrum, _add_report,
            _add_explore, _add_reshape, _add_export, _add_import, _add_demo, _add_study, _add_presets)  # the order of --help


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
