"""The commands over one run directory, in pipeline order: corpus, tokenize, train, trace, fit,
spectrum, report, explore. Each has `add_<command>` (its flags) and `cmd_<command>` (the call)."""
from __future__ import annotations

from tokenclock.cli.args import common_flags, config_of, flags_of, show
from tokenclock.errors import ConfigError
from tokenclock.pipeline import fit_npz, prepare, train
from tokenclock.rundir import RAW, WEIGHT_SERIES, WEIGHTS_HELP, RunDir
from tokenclock.stages.corpus.stage import build_corpus, count_documents
from tokenclock.stages.fit.stage import fit
from tokenclock.stages.report.stage import report
from tokenclock.stages.spectrum.replicate import replicate
from tokenclock.stages.spectrum.stage import spectrum
from tokenclock.stages.trace.modes import trace_checkpoints
from tokenclock.stages.trace.suites import SUITES
from tokenclock.stages.train.config import zoom_interval


def add_corpus(sub) -> None:
    sp = sub.add_parser("corpus", help="assemble the corpus (built-in by default) and split by document")
    sp.add_argument("--source", action="append", help="text file, folder, .jsonl, .parquet or hf:NAME (repeatable)")
    sp.add_argument("--synthetic", metavar="NAME", help="a built-in synthetic corpus with known learning "
                    "times (facts): the source synthetic:NAME")
    sp.add_argument("--out", help="run directory to write corpus/ into (omit to just build and count)")
    common_flags(sp)
    sp.set_defaults(func=cmd_corpus)


def cmd_corpus(args) -> int:
    sources = (args.source or []) + ([f"synthetic:{args.synthetic}"] if args.synthetic else [])
    cfg = config_of(args, defaults={"corpus": {"sources": sources}} if sources else None)
    if args.out is None:
        show(count_documents(cfg.corpus))
        return 0
    show(build_corpus(args.out, cfg.corpus, progress=not args.quiet))
    return 0


def add_tokenize(sub) -> None:
    sp = sub.add_parser("tokenize", help="train/load the tokenizer and write token streams")
    sp.add_argument("--out", required=True, help="run directory")
    common_flags(sp)
    sp.set_defaults(func=cmd_tokenize)


def cmd_tokenize(args) -> int:
    show(prepare(args.out, config_of(args), progress=not args.quiet))
    return 0


def add_train(sub) -> None:
    sp = sub.add_parser("train", help="train a model with a dense log-spaced checkpoint series",
                        description="Train (or resume) the run in --out. With --zoom A:B, then replay steps "
                        "A..B of the trained run from its newest kept training state at or before A, bit for "
                        "bit, and add the checkpoints of a denser schedule inside [A, B] to its series.")
    sp.add_argument("--out", required=True, help="run directory")
    sp.add_argument("--zoom", metavar="A:B", help="replay steps A..B with denser checkpoints (train.zoom)")
    sp.add_argument("--zoom-ckpt-per-decade", type=int, metavar="N",
                    help="checkpoints per decade inside the zoom (train.zoom_ckpt_per_decade; "
                    "default 4x train.ckpt_per_decade)")
    common_flags(sp)
    sp.set_defaults(func=cmd_train)




def cmd_train(args) -> int:
    flags = {"train": {k: v for k, v in (("zoom", zoom_interval(args.zoom)),
                                         ("zoom_ckpt_per_decade", args.zoom_ckpt_per_decade)) if v is not None}}
    show(train(args.out, config_of(args, flags=flags), progress=not args.quiet))
    return 0

TRACE_FLAGS = ("n_seqs", "seq_len", "batch_size", "seed", "dtype", "device", "weights")  # -> trace.<flag>


def add_trace(sub) -> None:
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
    sp.add_argument("--weights", choices=WEIGHT_SERIES, help="trace.weights: " + WEIGHTS_HELP)
    common_flags(sp)
    sp.set_defaults(func=cmd_trace)


def cmd_trace(args) -> int:
    cfg = config_of(args, flags=flags_of(args, "trace", TRACE_FLAGS))
    show(trace_checkpoints(args.run, cfg.trace, model=args.model, revisions=args.revisions,
                             models=args.models, revision=args.revision, text=args.text, out=args.out,
                             tokens_per_step=args.tokens_per_step, step_pattern=args.step_pattern,
                             step_map=args.step_map, skip_bad=args.skip_bad, progress=not args.quiet))
    return 0

def add_fit(sub) -> None:
    sp = sub.add_parser("fit", help="fit sigmoid learning events to every token trajectory")
    sp.add_argument("run", nargs="?", help="run directory")
    sp.add_argument("--npz", help="a losses.npz (axis_values, loss_matrix, axis_name) or a dataset directory "
                    "(export --hf-dataset; checksums verified) instead of a run")
    sp.add_argument("--out", help="output directory for --npz")
    sp.add_argument("--uncertainty", action="store_true", default=None,  # None: as the config says
                    help="standard errors of each learning time mu (events column mu_se)")
    sp.add_argument("--max-events", type=int, choices=(0, 1, 2, 3), help="most sigmoid events per token")
    sp.add_argument("--weights", choices=WEIGHT_SERIES, default=RAW, help=WEIGHTS_HELP)
    common_flags(sp)
    sp.set_defaults(func=cmd_fit)


def cmd_fit(args) -> int:
    cfg = config_of(args, flags=flags_of(args, "fit", ("uncertainty", "max_events")))
    if args.npz:
        if not args.out:
            raise ConfigError("--npz needs --out DIR", "e.g. tokenclock fit --npz losses.npz --out fits/")
        show(fit_npz(args.npz, args.out, cfg.fit, progress=not args.quiet))
    elif args.run is None:
        raise ConfigError("fit needs a run directory or --npz FILE --out DIR")
    else:
        show(fit(RunDir(args.run, args.weights), cfg.fit, progress=not args.quiet))
    return 0


def add_spectrum(sub) -> None:
    sp = sub.add_parser("spectrum", help="learning-time spectrum and reconstruction of -dL/dln x")
    sp.add_argument("run", help="run directory")
    sp.add_argument("--weights", choices=WEIGHT_SERIES, default=RAW, help=WEIGHTS_HELP)
    sp.add_argument("--replicate", metavar="RUN2", help="a replicate of RUN (another train.data_seed, same "
                    "init and traced tokens, already fitted): the replicate ceiling beside the R^2")
    common_flags(sp)
    sp.set_defaults(func=cmd_spectrum)


def cmd_spectrum(args) -> int:
    run = RunDir(args.run, args.weights)
    cfg = config_of(args).spectrum
    if args.replicate:
        show(replicate(run, RunDir(args.replicate, args.weights), cfg, progress=not args.quiet))
    else:
        show(spectrum(run, cfg, progress=not args.quiet))
    return 0


def add_report(sub) -> None:
    sp = sub.add_parser("report", help="write RUN/report/index.html")
    sp.add_argument("run", help="run directory")
    sp.add_argument("--weights", choices=WEIGHT_SERIES, default=RAW,
                    help=WEIGHTS_HELP + "; the raw report shows an averaged series beside it")
    sp.set_defaults(func=cmd_report)


def cmd_report(args) -> int:
    print(f"report: {report(RunDir(args.run, args.weights))}")
    return 0


def add_explore(sub) -> None:
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
