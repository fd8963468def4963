"""The replicate ceiling of the demo: the demo config trained twice (data-order seeds 0 and 1: same
initial weights, same traced tokens), both weight series traced, fitted and reconstructed, then
`tokenclock spectrum A --replicate B` for each series. Prints every R^2 of -dL/dln(step) beside
the ceilings that bound it.

    python benchmarks/reconstruction_ceiling.py [--out runs/ceiling] [--a runs/demo] [--config demo]

--a reuses a finished demo run as run A (its data seed must be 0); every stage resumes, so a
rerun only prints. About two demos of compute (2 x ~15 min on 2 CPU cores) when nothing is reused.
Writes OUT/ceiling.json with the printed figures.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import _common  # HF_HUB_OFFLINE; the machine header


def _fmt(v) -> str:
    return "   n/a" if v is None else f"{v:6.3f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="runs/ceiling")
    ap.add_argument("--a", help="run A: an existing demo run (default OUT/seed0)")
    ap.add_argument("--config", default="demo")
    ap.add_argument("--set", action="append", default=[])
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args()
    _common.machine_header()

    from tokenclock.artifacts import write_json
    from tokenclock.pipeline import demo
    from tokenclock.rundir import RunDir
    from tokenclock.stages.spectrum.replicate import replicate

    out = Path(args.out)
    run_a = Path(args.a) if args.a else out / "seed0"
    run_b = out / "seed1"
    heads = {}
    # A: the config's own data order (train.data_seed unset = the seed, 0); B: data seed 1
    for name, path, extra in (("A", run_a, []), ("B", run_b, ["train.data_seed=1"])):
        print(f"== run {name}: {path} ({extra[0] if extra else 'train.data_seed = seed'})", flush=True)
        heads[name] = demo(path, args.config, [*extra, *args.set], progress=not args.quiet)
    series = ["raw"] + (["avg"] if "avg" in heads["A"] else [])
    reps = {w: replicate(RunDir(run_a, w), RunDir(run_b, w)) for w in series}
    rows = []

    def row(label: str, vals: dict) -> None:
        rows.append((label, vals))

    for w in series:
        ha, hb = (heads["A"] if w == "raw" else heads["A"]["avg"]), (heads["B"] if w == "raw" else heads["B"]["avg"])
        rep = reps[w]
        ceil = rep["ceiling_r2"]["mean"]["after_warmup"]
        row(f"[{w}] replicate ceiling R^2 (A vs B measured), after warmup", {"value": ceil})
        row(f"[{w}] replicate ceiling R^2, all checkpoints", {"value": rep["ceiling_r2"]["mean"]["all"]})
        for key, label in (("reconstruction_r2", "in-sample"),
                           ("reconstruction_r2_heldout_after_warmup", "held-out (every other), after warmup"),
                           ("reconstruction_r2_block_heldout_after_warmup", "held-out (blocks), after warmup"),
                           ("token_split_r2_after_warmup", "token split, after warmup"),
                           ("token_split_ceiling_r2_after_warmup", "token-split ceiling, after warmup")):
            row(f"[{w}] {label}", {"A": ha.get(key), "B": hb.get(key)})
        for run, h in (("A", ha), ("B", hb)):
            v = h.get("reconstruction_r2_heldout_after_warmup")
            row(f"[{w}] run {run} held-out after warmup / ceiling (goal >= 0.95)",
                {"value": v / ceil if v is not None and ceil else None})
        row(f"[{w}] A's events predict B's measured, after warmup",
            {"value": rep["cross_reconstruction_r2"]["a_events_predict_b"]["after_warmup"]})
        row(f"[{w}] B's events predict A's measured, after warmup",
            {"value": rep["cross_reconstruction_r2"]["b_events_predict_a"]["after_warmup"]})
    print(f"\nreplicate ceiling: {args.config} config, data seeds 0 and 1; R^2 of -dL/dln(step)")
    for label, vals in rows:
        print(f"  {label:<66}" + "  ".join(f"{k} {_fmt(v)}" if k != "value" else _fmt(v) for k, v in vals.items()))
    write_json(out / "ceiling.json", {"runs": [str(run_a), str(run_b)], "config": args.config,
                                      "rows": [{"label": label, **vals} for label, vals in rows], "replicate": reps})
    print(f"wrote {out / 'ceiling.json'}")


if __name__ == "__main__":
    main()
