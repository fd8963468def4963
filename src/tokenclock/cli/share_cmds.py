"""The commands that make or share data beyond one run's stages: reshape (a data schedule from a
reference run), export and import (the paper's losses.npz, a Hugging Face dataset)."""
from __future__ import annotations

from tokenclock.cli.args import common_flags, config_of, flags_of, show
from tokenclock.errors import ConfigError
from tokenclock.stages.reshape.config import STRATEGIES
from tokenclock.stages.reshape.stage import reshape
from tokenclock.stages.trace.npz import export_npz

RESHAPE_FLAGS = ("strategy", "pool_size", "window", "mix", "sharpness", "max_ckpts", "seed", "steps",
                 "batch_size", "seq_len", "device")  # -> reshape.<flag>


def add_reshape(sub) -> None:
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
    common_flags(sp)  # the flags above are reshape.<key>; --set reshape.n_bins=... reaches the others
    sp.set_defaults(func=cmd_reshape)


def cmd_reshape(args) -> int:
    cfg = config_of(args, flags=flags_of(args, "reshape", RESHAPE_FLAGS))
    show(reshape(args.run, args.out, cfg.reshape, progress=not args.quiet))
    return 0


def add_export(sub) -> None:
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
        show({"dataset": args.hf_dataset, "axes": man["axes"], "files": [f["path"] for f in man["files"]]})
        return 0
    print(f"wrote {export_npz(args.run, args.npz, axis=args.axis)}")
    return 0


def add_import(sub) -> None:
    sp = sub.add_parser("import", help="read a dataset written by `export --hf-dataset` into a run (checksums first)")
    sp.add_argument("dataset", help="dataset directory (manifest.yaml, <axis>/losses.npz)")
    sp.add_argument("--out", required=True, help="run directory to write trace/ into; then `tokenclock fit OUT`")
    sp.add_argument("--axis", help="which axis's losses.npz (default: the first in the manifest)")
    sp.set_defaults(func=cmd_import)


def cmd_import(args) -> int:
    from tokenclock.export import import_dataset

    show(import_dataset(args.dataset, args.out, axis=args.axis))
    return 0
