"""The commands over many runs or none: demo (one run's whole T-axis study), study (a grid of
runs: D and M axes) and presets (the model and config presets)."""
from __future__ import annotations

import sys

from tokenclock.cli.args import show
from tokenclock.config import PRESET_DIR
from tokenclock.pipeline import demo
from tokenclock.rundir import StudyDir
from tokenclock.stages.train.config import PRESETS
from tokenclock.stages.train.model import preset_params
from tokenclock.study.config import load_study
from tokenclock.study.stage import study


def add_demo(sub) -> None:
    sp = sub.add_parser("demo", help="the whole T-axis study on the built-in corpus")
    sp.add_argument("--out", default="runs/demo", help="run directory (default runs/demo)")
    sp.add_argument("--config", default="demo", help="config preset or file (default demo)")
    sp.add_argument("--set", action="append", metavar="KEY=VALUE")
    sp.add_argument("--quiet", action="store_true")
    sp.set_defaults(func=cmd_demo)


def cmd_demo(args) -> int:
    demo(args.out, config=args.config, overrides=args.set, progress=not args.quiet)
    return 0


def add_study(sub) -> None:
    sp = sub.add_parser("study", help="a grid of runs (models x budgets x seeds): D and M axes, "
                        "Chinchilla baseline, study report",
                        description="Train (or resume) every run of a study config, build the D and M "
                        "axes from their final per-token losses, fit and reconstruct along T, D and M.")
    sp.add_argument("config", help="study YAML (study: + base: sections) or preset (study-tiny, study-cpu, study-gpu, study-synthetic)")
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
        show({"study": args.out, "only": args.only,
                "runs": {k: v.get("status") for k, v in man.get("runs", {}).items()}})
        return 0
    show({"study": args.out, "summary": man.get("summary"), "chinchilla": man.get("chinchilla"),
            "branch_vs_full": man.get("branch_vs_full"), "n_failed": man.get("n_failed"),
            "seconds": man.get("seconds"), "report": str(StudyDir(args.out).report_html)})
    failed = [n for n, r in man["runs"].items() if r.get("status") == "failed"]
    if failed:
        print(f"tokenclock: error: {len(failed)} run(s) failed ({', '.join(failed[:4])}); the axes use the "
              "rest (see study.json)", file=sys.stderr)
        return 8
    return 0


def add_presets(sub) -> None:
    sp = sub.add_parser("presets", help="list model and config presets")
    sp.set_defaults(func=cmd_presets)


def cmd_presets(args) -> int:
    print("model presets (non-embedding parameters):")
    for name in PRESETS:
        h, L, nh, nkv, inter = PRESETS[name]
        print(f"  {name:<12} {preset_params(name):>13,}  hidden={h} layers={L} heads={nh} kv_heads={nkv} mlp={inter}")
    print("config presets: " + ", ".join(sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))))
    return 0
