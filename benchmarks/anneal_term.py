"""The decay: does an annealing term shared by every token, beside the per-token events, lift the
held-out reconstruction of -dL/dln(step) at the end of a decaying schedule?

    python benchmarks/anneal_term.py --run runs/demo [--weights raw avg] [--out DIR]
                                     [--ceiling runs/ceiling/ceiling.json] [--set fit.max_events=3]

For each weight series of a traced run (its trace is read, never changed), in two run-like copies
under --out that share the run's trace files:

- plain: the fit and spectrum stages on the measured losses (with the run's fit and spectrum
  configs, plus --set overrides), as `tokenclock fit` and `tokenclock spectrum` would;
- shared term: the mean loss after warmup fitted once as L0 + A S1^-alpha - C S2 (S1 the area
  under the learning rate, S2 the annealing area: stages/spectrum/anneal.py) on the checkpoints
  the held-out fit uses; C S2(step) added back to every token's loss (what the annealing took off
  all tokens at once); the same fit and spectrum on that; the reconstruction is then the events'
  -dL/du plus the shared term's.

Prints both side by side: R^2 in-sample and held out (every other checkpoint) after warmup, held
out over the last decade of steps, in-sample over the decay's last half, and the share of the mean loss's
drop after warmup carried by the events and by the shared term. With --ceiling (a
`tokenclock ceiling` result), the replicate ceiling after warmup and each held-out score's ratio to
it. Writes OUT/anneal_term.json.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import sys
import time
from pathlib import Path

import _common  # HF_HUB_OFFLINE; the machine header
import numpy as np

TRACE_FILES_SKIP = {"loss.npy"}


def copy_run(run, dst: Path, loss_kn: np.ndarray):
    """A run-like directory at dst with the run's manifest and trace files (hard links) and
    loss.npy replaced by loss_kn; returns its RunDir."""
    from tokenclock.artifacts import write_npy
    from tokenclock.rundir import RunDir

    shutil.rmtree(dst, ignore_errors=True)
    out = RunDir(dst)
    out.trace_loss.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(run.manifest, out.manifest)
    for f in run.trace_loss.parent.iterdir():
        if f.is_file() and f.name not in TRACE_FILES_SKIP:
            try:
                os.link(f, out.trace_loss.parent / f.name)
            except OSError:
                shutil.copy2(f, out.trace_loss.parent / f.name)
    write_npy(out.trace_loss, np.ascontiguousarray(loss_kn, dtype=np.float32))
    return out


def r2(a, b, m):
    from tokenclock.scores import r2_score

    return r2_score(np.asarray(a)[m], np.asarray(b)[m]) if m.sum() > 2 else None


def one_series(run, out: Path, sets: list[str]) -> dict:
    """Plain and shared-term fits of one weight series; their scores and shares."""
    from tokenclock.artifacts import read_json, read_npy, read_parquet
    from tokenclock.config import build_section, merge, parse_overrides
    from tokenclock.manifest import load_manifest, stage_config
    from tokenclock.stages.fit.config import FitConfig
    from tokenclock.stages.fit.stage import fit, load_axis
    from tokenclock.stages.spectrum.anneal import fit_mean_law, lr_per_update, schedule_areas
    from tokenclock.stages.spectrum.config import SpectrumConfig
    from tokenclock.stages.spectrum.reconstruct import measured_derivative
    from tokenclock.stages.spectrum.stage import spectrum, warmup_end
    from tokenclock.study.plan import branch_start

    over = parse_overrides(sets)
    unknown = set(over) - {"fit", "spectrum"}
    if unknown:
        raise SystemExit(f"anneal_term: --set takes fit.* and spectrum.* keys, not {sorted(unknown)[0]}.*")

    def section(cls, name):
        names = {f.name for f in dataclasses.fields(cls)}
        saved = {k: v for k, v in (stage_config(run, name) or {}).items() if k in names}
        return build_section(cls, merge(saved, over.get(name, {})), name)

    fcfg, scfg = section(FitConfig, "fit"), section(SpectrumConfig, "spectrum")
    train = load_manifest(run)["stages"]["train"]["config"]["train"]
    loss = read_npy(run.trace_loss)
    steps_all = np.asarray(read_parquet(run.trace_axis, columns=["step"])["step"], np.int64)
    u, keep = load_axis(run, "step")
    steps = steps_all[keep]
    after = steps >= warmup_end(run, scfg)
    heldin = np.zeros(len(u), bool)
    heldin[0::2] = True
    L = loss[keep].mean(1, dtype=np.float64)
    lrs = lr_per_update(train, int(steps_all.max()))
    law = fit_mean_law(L, steps, lrs, heldin & after)
    s2_all = schedule_areas(lrs, steps_all, law["momentum"])[1]
    t = time.time()
    plain = copy_run(run, out / "plain", loss)
    shared = copy_run(run, out / "shared_term", loss + (law["C"] * s2_all)[:, None])
    for d in (plain, shared):
        fit(d, dataclasses.replace(fcfg, axis="step", extra_axes=[]), progress=False)
        spectrum(d, scfg, progress=False)
    seconds = time.time() - t
    cp = read_parquet(plain.spectrum_curve())
    ca = read_parquet(shared.spectrum_curve())
    term = -law["C"] * measured_derivative(law["s2"], u, scfg.smoothing)   # the shared term's -dL/du
    meas = np.asarray(cp["dldu_measured"])
    gap = float(np.max(np.abs(np.asarray(ca["dldu_measured"]) + term - meas)))
    held = ~heldin
    last_decade = steps >= steps.max() / 10
    decay_start = (branch_start(int(train["steps"]), float(train.get("decay_fraction", 0.2)))
                   if train.get("schedule") == "wsd" else int(train.get("warmup_steps") or 0))
    late = steps >= decay_start + (steps.max() - decay_start) / 2
    rows = {"plain": (np.asarray(cp["dldu_reconstructed"]), np.asarray(cp["dldu_heldout"])),
            "shared_term": (np.asarray(ca["dldu_reconstructed"]) + term, np.asarray(ca["dldu_heldout"]) + term)}
    scores = {}
    for name, (rec, rec_held) in rows.items():
        scores[name] = {"in_sample_after_warmup": r2(rec, meas, after),
                        "heldout_after_warmup": r2(rec_held, meas, held & after),
                        "heldout_last_decade": r2(rec_held, meas, held & last_decade),
                        "in_sample_late_decay": r2(rec, meas, late)}
    a0 = int(np.argmax(after))
    drop = float(L[a0] - L[-1])
    shared_drop = float(law["C"] * (law["s2"][-1] - law["s2"][a0]))
    fp, fa = read_json(plain.fit_summary), read_json(shared.fit_summary)
    return {"scores": scores, "law": {k: v for k, v in law.items() if k != "s2"},
            "drop_after_warmup_nats": drop, "shared_term_share_of_drop": shared_drop / drop if drop else None,
            "events_share_of_drop": 1 - shared_drop / drop if drop else None,
            "measured_identity_max_error": gap, "after_step": int(steps[a0]), "last_decade_from_step": int(steps.max() / 10),
            "late_decay_from_step": int(decay_start + (steps.max() - decay_start) / 2),
            "class_share": {"plain": fp.get("class_share"), "shared_term": fa.get("class_share")},
            "model_share": {"plain": fp.get("model_share"), "shared_term": fa.get("model_share")},
            "fit_config": dataclasses.asdict(fcfg), "fit_and_spectrum_seconds": round(seconds, 1)}


def ceiling_after_warmup(path: Path | None, weights: str) -> float | None:
    if path is None or not path.is_file():
        return None
    for r in json.loads(path.read_text()).get("rows", []):
        if r["label"] == f"[{weights}] replicate ceiling R^2 (A vs B measured), after warmup":
            return r.get("value")
    return None


def _c(v) -> str:
    return f"{v:9.3f}" if isinstance(v, (int, float)) and np.isfinite(v) else "      n/a"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", required=True, help="a traced run directory")
    ap.add_argument("--weights", nargs="+", default=["raw", "avg"], help="weight series (default raw avg)")
    ap.add_argument("--out", help="scratch directory for the two run-like copies (default RUN/../NAME_anneal)")
    ap.add_argument("--ceiling", type=Path, help="ceiling.json of `tokenclock ceiling`, for the ratios")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="fit./spectrum. override")
    args = ap.parse_args(argv)
    _common.machine_header(yardstick=False)
    from tokenclock.rundir import RunDir, check_series

    root = Path(args.run)
    out = Path(args.out) if args.out else root.parent / f"{root.name}_anneal"
    t0 = time.time()
    result = {"run": str(root), "overrides": args.set, "series": {}}
    for w in args.weights:
        check_series(w)
        run = RunDir(root, w)
        r = one_series(run, out / w, args.set)
        r["replicate_ceiling_after_warmup"] = ceiling_after_warmup(args.ceiling, w)
        result["series"][w] = r
    result["wall_seconds"] = round(time.time() - t0, 1)
    result["command"] = " ".join(["python benchmarks/anneal_term.py", *(argv if argv is not None else sys.argv[1:])])
    out.mkdir(parents=True, exist_ok=True)
    (out / "anneal_term.json").write_text(json.dumps(result, indent=2))
    print(f"anneal term: {root} ({', '.join(args.set) or 'the run fit config'}); {result['wall_seconds']:.0f} s")
    for w, r in result["series"].items():
        law = r["law"]
        ceil = r["replicate_ceiling_after_warmup"]
        print(f"  [{w}] mean loss after warmup = {law['L0']:.3f} + {law['A']:.3f} S1^-{law['alpha']:.3f} - "
              f"{law['C']:.3g} S2 (momentum {law['momentum']}; R^2 {law['r2']:.4f} on the held-in checkpoints)")
        print(f"  {'-dL/dln(step) R^2':<44}{'plain':>9}{'+ shared':>9}")
        labels = {"in_sample_after_warmup": "in-sample, after warmup",
                  "heldout_after_warmup": "held-out, after warmup",
                  "heldout_last_decade": f"held-out, last decade (step >= {r['last_decade_from_step']})",
                  "in_sample_late_decay": f"in-sample, decay's last half (step >= {r['late_decay_from_step']})"}
        for k, label in labels.items():
            print(f"  {label:<44}{_c(r['scores']['plain'][k])}{_c(r['scores']['shared_term'][k])}")
        if ceil is not None:
            print(f"  {'replicate ceiling, after warmup':<44}{_c(ceil)}")
            print(f"  {'held-out after warmup / ceiling (goal >= 0.95)':<44}"
                  f"{_c(r['scores']['plain']['heldout_after_warmup'] / ceil)}"
                  f"{_c(r['scores']['shared_term']['heldout_after_warmup'] / ceil)}")
        print(f"  drop of the mean loss after warmup {r['drop_after_warmup_nats']:.3f} nats: events "
              f"{r['events_share_of_drop']:.1%}, shared term {r['shared_term_share_of_drop']:.1%}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
