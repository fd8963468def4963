"""The D and M axes of a study scored against their replicate ceiling (issue 16's figure): runs
(or resumes) `tokenclock study CONFIG --out OUT` and prints, per axis kind and weight series, the
fit rule chosen on held-out points, the reconstruction R^2 of -dL/dln D and -dL/dln N in-sample,
on held-out points (every other point; each point left out), the replicate ceiling of two data
seeds and the ratios, beside the old study-cpu's in-sample figures (6 x 8 grid, one seed: D 0.26,
M 0.61, README), then each axis and the fit-rule table.

    python benchmarks/study_axes.py [--config study-cpu] [--out runs/study-cpu] [--report-only]

study-cpu trains 240 runs (about 2 hours on 2 CPU cores; README); every run resumes, so a rerun
after a crash or with --report-only only rebuilds the axes or prints. Writes OUT/axes_figures.json.
Goal: held-out R^2 >= 0.9 on every axis, or >= 0.95 x the replicate ceiling where that is lower.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import _common  # HF_HUB_OFFLINE; the machine header

OLD = {"D": 0.26, "M": 0.61}  # old study-cpu, in-sample mean R^2 (README, "The longer grid")
KEYS = ("reconstruction_r2", "reconstruction_r2_heldout", "reconstruction_r2_loo", "replicate_ceiling_r2",
        "heldout_ratio_to_ceiling", "loo_ratio_to_ceiling", "reconstruction_r2_discrete",
        "reconstruction_r2_heldout_discrete", "reconstruction_r2_loo_discrete")


def _f(v) -> str:
    return "   n/a" if v is None else f"{v:6.3f}"


def _goal(a: dict, key: str) -> bool | None:
    r2, ceil = a.get(key), a.get("replicate_ceiling_r2")
    if r2 is None:
        return None
    return r2 >= 0.9 or (ceil is not None and ceil < 0.9 / 0.95 and r2 >= 0.95 * ceil)


def _edge_share(axis_dir: Path) -> float | None:
    """Share of the leave-one-out reconstruction's squared error at the two smallest axis points
    (from the axis' spectrum/curve.parquet)."""
    import numpy as np

    from tokenclock.artifacts import read_parquet
    from tokenclock.rundir import RunDir

    p = RunDir(axis_dir).spectrum_curve()
    if not p.is_file():
        return None
    c = read_parquet(p)
    if "dldu_loo" not in c:
        return None
    err = (np.asarray(c["dldu_loo"], float) - np.asarray(c["dldu_measured"], float)) ** 2
    ok = np.isfinite(err)
    return float(err[ok][:2].sum() / err[ok].sum()) if ok.sum() > 2 and err[ok].sum() > 0 else None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="study-cpu")
    ap.add_argument("--out", default="runs/study-cpu")
    ap.add_argument("--set", action="append", default=[])
    ap.add_argument("--report-only", action="store_true", help="print from OUT/study.json, train nothing")
    args = ap.parse_args()
    _common.machine_header()
    out = Path(args.out)
    t0 = time.time()
    if not args.report_only:
        from tokenclock.cli import main as cli
        sets = sum((["--set", s] for s in args.set), [])
        rc = cli(["study", args.config, "--out", str(out), *sets])
        if rc:
            raise SystemExit(rc)
    man = json.loads((out / "study.json").read_text())
    runs = man["runs"].values()
    train_s = sum(r.get("train_seconds") or 0 for r in runs if r.get("status") == "done")
    figures: dict = {"config": args.config, "n_runs": len(man["runs"]), "n_failed": man.get("n_failed"),
                     "train_seconds_sum": round(train_s, 1), "analysis_seconds": man.get("seconds"),
                     "this_call_seconds": round(time.time() - t0, 1), "series": {}}
    print(f"{args.config}: {len(man['runs'])} runs, {man.get('n_failed')} failed; training {train_s / 60:.1f} min "
          f"(sum over runs); study call {man.get('seconds')} s")
    print("\nmean over the axes of each kind (in-sample, held out every other point, each point left out; "
          "ceiling = R^2 between two data seeds):")
    print("axis  weights  rule         in-sample  every-other  left-out  ceiling  ratio(eo)  ratio(loo)  "
          "| discrete: in / eo / loo  | goal met (eo / loo; of these with a ceiling < 0.1: nothing replicates)"
          "   old in-sample")
    for w in ("raw", "avg"):
        axes = man.get("axes" if w == "raw" else f"axes_{w}")
        if not axes:
            continue
        figures["series"][w] = {}
        for kind in ("D", "M"):
            done = [a for a in axes.values() if a.get("axis") == kind and a.get("status") == "done"]
            if not done:
                continue
            mean = {k: (sum(a[k] for a in done if a.get(k) is not None) / max(1, sum(a.get(k) is not None for a in done)))
                    if any(a.get(k) is not None for a in done) else None for k in KEYS}
            met = {k: sum(bool(_goal(a, k)) for a in done) for k in ("reconstruction_r2_heldout", "reconstruction_r2_loo")}
            vacuous = {k: sum(bool(_goal(a, k)) and (a.get("replicate_ceiling_r2") or 0) < 0.1 for a in done)
                       for k in met}
            figures["series"][w][kind] = {"n_axes": len(done), "fit_rule": done[0].get("fit_rule"), "mean": mean,
                                          "axes_meeting_goal": met,
                                          "of_these_with_ceiling_below_0.1": vacuous}
            print(f"{kind:5s} {w:8s} {str(done[0].get('fit_rule')):12s} {_f(mean['reconstruction_r2'])}     "
                  f"{_f(mean['reconstruction_r2_heldout'])}      {_f(mean['reconstruction_r2_loo'])}   "
                  f"{_f(mean['replicate_ceiling_r2'])}   {_f(mean['heldout_ratio_to_ceiling'])}     "
                  f"{_f(mean['loo_ratio_to_ceiling'])}    | {_f(mean['reconstruction_r2_discrete'])} "
                  f"{_f(mean['reconstruction_r2_heldout_discrete'])} {_f(mean['reconstruction_r2_loo_discrete'])} | "
                  f"{met['reconstruction_r2_heldout']}/{len(done)} / {met['reconstruction_r2_loo']}/{len(done)}"
                  f" ({vacuous['reconstruction_r2_heldout']} / {vacuous['reconstruction_r2_loo']} with ceiling < 0.1)"
                  f"            {OLD[kind]:.2f}")
    print("\neach axis (raw | avg): in-sample, every-other, left-out, ceiling, share of the left-out squared "
          "error at the two smallest axis points")
    raw, avg = man.get("axes", {}), man.get("axes_avg", {})
    figures["edge_share"] = {}
    for name in sorted(raw):
        row = [f"{name:22s}"]
        for w, axes in (("raw", raw), ("avg", avg)):
            a = axes.get(name, {})
            if a.get("status") != "done":
                row.append(f"{a.get('status', '-')}: {a.get('error', '')}"[:40])
                continue
            share = _edge_share(out / ("axes" if w == "raw" else f"axes_{w}") / name)
            figures["edge_share"][f"{w}/{name}"] = share
            row.append(" ".join(_f(a.get(k)) for k in KEYS[:4]) + " " + _f(share))
        print(" | ".join(row))
    print("\nfit rules (mean R^2 over the axes of a kind; chosen on the raw series by leave-one-out):")
    for w, kinds in (man.get("fit_rules") or {}).items():
        for kind, c in (kinds or {}).items():
            if "score_mean" not in c:
                print(f"  {kind} {w}: {c.get('chosen')} (chosen on {c.get('chosen_on')})")
                continue
            print(f"  {kind} {w}: chosen {c['chosen']}; left-out " + ", ".join(
                f"{r} {_f(v).strip()}" for r, v in c["score_mean"].items()) + "; every-other " + ", ".join(
                f"{r} {_f(v).strip()}" for r, v in c["heldout_every_other_r2_mean"].items()))
    figures["fit_rules"] = man.get("fit_rules")
    figures["T"] = man.get("T")
    (out / "axes_figures.json").write_text(json.dumps(figures, indent=1, default=str))
    print(f"\nwrote {out / 'axes_figures.json'}; report: {out / 'report' / 'index.html'}")


if __name__ == "__main__":
    main()
