"""Known answers along D and M (and the study's T axis): does the method recover the planted
learning order of every fact along each axis?

    python benchmarks/synthetic_study.py [--out runs/study-synthetic] [--report-only] [--quick]
                                         [--set KEY=VALUE ...]

Runs (or resumes) `tokenclock study study-synthetic --out OUT`: 7 models x 9 token budgets x 2
data-order seeds on the planted corpus synthetic:facts (lines `Entity relation value`, 8,000 facts
of Zipf-distributed entities; stages/corpus/synthetic.py). A fact seen c times per unit of data is
learned once a budget shows it often enough (D) and once a model has room for it (M), so along both
axes a value token's learning time should fall as c rises. Prints, per axis kind (D: one axis per
model, M: one per budget, T: the largest model's longest run) and weight series (raw and averaged
finals), each beside its goal and its bound:

- Spearman between the fitted learning time (mu of the dominant event of a learnable value token
  classified `learned`) and the planted count, median over the axes of the kind, and the
  model-free ceiling: the same for the axis point at which each token has made half its drop
  (goal <= -0.9);
- the share of the learnable value tokens classified learned;
- the reconstruction R^2 of -dL/dln D and -dL/dln M in-sample, held out (every other point; each
  point left out) and the replicate ceiling of the two seeds (goal: held-out >= 0.9, or >= 0.95 x
  the ceiling where that is lower and positive; c>0 counts the axes whose seeds agree at all);

then every axis. Writes OUT/synthetic_study.json. `--quick` runs a seconds-long grid for tests
(its figures mean nothing).
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import _common  # HF_HUB_OFFLINE before transformers is imported; the machine header
import numpy as np
from synthetic_control import dominant_mu, half_drop_steps

GOAL_SPEARMAN = -0.9
GOAL_R2 = 0.9
GOAL_RATIO = 0.95
QUICK = ["study.models=[llama-7k,llama-15k,llama-27k,llama-60k]", "study.budgets_steps=[12,18,27,40]",
         "study.axis_fit_rules=[two_events]", "study.bootstrap=0", "corpus.max_chars=300000", "tokens.vocab_size=2048",
         "train.batch_size=4", "train.seq_len=32", "train.warmup_steps=4", "train.ckpt_per_decade=4",
         "train.val_seqs=4", "trace.n_seqs=48", "corpus.val_fraction=0.1"]
R2_KEYS = ("reconstruction_r2", "reconstruction_r2_heldout", "reconstruction_r2_loo", "replicate_ceiling_r2",
           "heldout_ratio_to_ceiling", "loo_ratio_to_ceiling")


def axis_learning(ax, column: str, truth: dict) -> dict:
    """Learning times along one axis (a run-like directory with trace/ and fit/) against the planted
    counts: Spearman of mu (learned value tokens) and of the model-free half-drop point (tokens that
    drop >= 1 nat), share learned, tokens behind each."""
    from scipy.stats import spearmanr

    from tokenclock.artifacts import read_npy, read_parquet

    cls = np.asarray(read_parquet(ax.fit_tokens, columns=["class"])["class"], dtype=object)
    mu = dominant_mu(read_parquet(ax.fit_events, columns=["tok_idx", "a", "mu"]), len(cls))
    count, learnable = truth["fact_count"], truth["learnable"]
    learned = learnable & (cls == "learned") & np.isfinite(mu)
    x = np.asarray(read_parquet(ax.trace_axis, columns=[column])[column], np.float64)
    loss = np.asarray(read_npy(ax.trace_loss)[:, learnable], np.float64)
    half = np.full(len(cls), np.nan)
    half[learnable] = half_drop_steps(loss, x, int(x[0]))
    halved = learnable & np.isfinite(half)

    def rho(t, m):
        return float(spearmanr(t[m], count[m]).statistic) if m.sum() > 2 else None

    return {"spearman_mu_vs_count": rho(mu, learned), "spearman_half_drop_vs_count": rho(half, halved),
            "learned_value_tokens": int(learned.sum()), "half_drop_value_tokens": int(halved.sum()),
            "learnable_value_tokens": int(learnable.sum()),
            "share_learned": float(learned.sum() / max(learnable.sum(), 1)),
            "median_count_learned": float(np.median(count[learned])) if learned.any() else None}


def score(out: Path) -> dict:
    """Every axis of the study in `out` scored against the planted truth of its shared tokens."""
    from tokenclock.artifacts import read_json
    from tokenclock.rundir import WEIGHT_SERIES, StudyDir, series_key
    from tokenclock.stages.corpus.synthetic import planted

    sd = StudyDir(out)
    manifest = read_json(sd.manifest)
    truth = planted(sd.shared.root)
    series = {}
    for w in WEIGHT_SERIES:
        axes = manifest.get(series_key("axes", w))
        if not axes:
            continue
        rows = {}
        for name, a in axes.items():
            if a.get("status") != "done":
                continue
            rows[name] = {"axis": a["axis"], "fixed": a.get("fixed"), "fit_rule": a.get("fit_rule"),
                          **axis_learning(sd.axis(name, w), a["column"], truth),
                          **{k: a.get(k) for k in R2_KEYS}}
        series[w] = rows
    t = manifest.get("T") or {}
    t_row = None
    if t.get("status") == "done":
        run = sd.run(t["run"])
        t_row = {"run": t["run"], **axis_learning(run, "step", truth),
                 **{k: read_json(run.spectrum_summary).get(k) for k in (
                     "reconstruction_r2", "reconstruction_r2_heldout", "reconstruction_r2_after_warmup",
                     "reconstruction_r2_heldout_after_warmup")}}
    return {"series": series, "T": t_row, "regimes": manifest.get("regimes"),
            "value_tokens": int((truth["kind"] == "value").sum()),
            "learnable_value_tokens": int(truth["learnable"].sum()), "traced_tokens": int(len(truth["tok_idx"]))}


def _mean(rows: list[dict], key: str):
    v = [r[key] for r in rows if r.get(key) is not None and math.isfinite(r[key])]
    return float(np.mean(v)) if v else None


def _median(rows: list[dict], key: str):
    v = [r[key] for r in rows if r.get(key) is not None and math.isfinite(r[key])]
    return float(np.median(v)) if v else None


def meets(r: dict, key: str) -> bool | None:
    """The reconstruction goal on one axis: R^2 >= 0.9, or >= 0.95 x the replicate ceiling where
    that ceiling is positive (a ceiling <= 0: the seeds' measured curves do not agree at all, and
    no score can be judged against it)."""
    v, ceil = r.get(key), r.get("replicate_ceiling_r2")
    if v is None:
        return None
    return v >= GOAL_R2 or (ceil is not None and ceil > 0 and v >= GOAL_RATIO * ceil)


def summarize(scores: dict) -> dict:
    """Per axis kind and weight series: medians of the learning-time scores, means of the R^2s,
    and how many axes meet each goal."""
    out = {}
    for w, rows in scores["series"].items():
        for kind in ("D", "M"):
            rs = [r for r in rows.values() if r["axis"] == kind]
            if not rs:
                continue
            out[f"{kind}_{w}"] = {
                "n_axes": len(rs),
                "spearman_mu_vs_count_median": _median(rs, "spearman_mu_vs_count"),
                "spearman_half_drop_vs_count_median": _median(rs, "spearman_half_drop_vs_count"),
                "axes_meeting_spearman": sum(1 for r in rs if (r["spearman_mu_vs_count"] or 0) <= GOAL_SPEARMAN),
                "share_learned_mean": _mean(rs, "share_learned"),
                **{f"{k}_mean": _mean(rs, k) for k in R2_KEYS},
                "axes_with_positive_ceiling": sum(1 for r in rs if (r.get("replicate_ceiling_r2") or 0) > 0),
                "axes_meeting_heldout": sum(1 for r in rs if meets(r, "reconstruction_r2_heldout")),
                "axes_meeting_loo": sum(1 for r in rs if meets(r, "reconstruction_r2_loo"))}
    return out


def _c(v, fmt: str = ".3f", width: int = 8) -> str:
    return f"{format(v, fmt) if isinstance(v, (int, float)) and math.isfinite(v) else 'n/a':>{width}}"


def format_scores(scores: dict, summary: dict) -> str:
    lines = [f"  {'axes':<8}{'Sp(mu,c)':>9}{'ceiling':>9}{'meet':>6}{'learned':>9}"
             f"{'R2 in':>8}{'held':>8}{'LOO':>8}{'repl.':>8}{'held/c':>8}{'meet':>6}{'c>0':>5}",
             f"  {'':<8}{'<=-0.9':>9}{'model-free':>9}{'':>6}{'share':>9}{'':>8}{'out':>8}{'':>8}"
             f"{'ceiling':>8}{'':>8}{'h/LOO':>6}"]
    for key, s in summary.items():
        lines.append(f"  {key:<8}{_c(s['spearman_mu_vs_count_median'], width=9)}"
                     f"{_c(s['spearman_half_drop_vs_count_median'], width=9)}"
                     f"{s['axes_meeting_spearman']:>3}/{s['n_axes']:<2}{_c(s['share_learned_mean'], width=9)}"
                     f"{_c(s['reconstruction_r2_mean'])}{_c(s['reconstruction_r2_heldout_mean'])}"
                     f"{_c(s['reconstruction_r2_loo_mean'])}{_c(s['replicate_ceiling_r2_mean'])}"
                     f"{_c(s['heldout_ratio_to_ceiling_mean'])}"
                     f"{s['axes_meeting_heldout']:>3}/{s['axes_meeting_loo']:<2}{s['axes_with_positive_ceiling']:>4}")
    t = scores.get("T")
    if t:
        lines.append(f"  T ({t['run']}): Spearman(mu, count) {_c(t['spearman_mu_vs_count'], width=0)} "
                     f"(model-free {_c(t['spearman_half_drop_vs_count'], width=0)}), share learned "
                     f"{_c(t['share_learned'], width=0)}, R^2 held-out after warmup "
                     f"{_c(t['reconstruction_r2_heldout_after_warmup'], width=0)} (in-sample "
                     f"{_c(t['reconstruction_r2_after_warmup'], width=0)})")
    lines.append("  every axis (Spearman of mu / of the half-drop point, learned tokens, share learned, "
                 "R^2 in-sample / held-out / left out, replicate ceiling):")
    for w, rows in scores["series"].items():
        for name, r in rows.items():
            lines.append(f"    {w:<4}{name:<14}{_c(r['spearman_mu_vs_count'])}{_c(r['spearman_half_drop_vs_count'])}"
                         f"{r['learned_value_tokens']:>7}{_c(r['share_learned'])}{_c(r['reconstruction_r2'])}"
                         f"{_c(r['reconstruction_r2_heldout'])}{_c(r['reconstruction_r2_loo'])}"
                         f"{_c(r['replicate_ceiling_r2'])}  {r['fit_rule']}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="runs/study-synthetic", help="study directory (reruns resume it)")
    ap.add_argument("--config", default="study-synthetic", help="study preset or YAML")
    ap.add_argument("--report-only", action="store_true", help="score a finished study; train nothing")
    ap.add_argument("--quick", action="store_true", help="a seconds-long grid for tests")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="study config override")
    args = ap.parse_args(argv)
    _common.machine_header(yardstick=not (args.quick or args.report_only))
    out = Path(args.out)
    t0 = time.time()
    if not args.report_only:
        from tokenclock.study.config import load_study
        from tokenclock.study.stage import study

        study(out, load_study(args.config, (QUICK if args.quick else []) + args.set), progress=False)
    scores = score(out)
    summary = summarize(scores)
    result = {"summary": summary, **scores, "wall_seconds": round(time.time() - t0, 1),
              "command": " ".join(["python benchmarks/synthetic_study.py",
                                   *(argv if argv is not None else sys.argv[1:])])}
    (out / "synthetic_study.json").write_text(json.dumps(result, indent=2))
    print(f"synthetic study: {out} ({scores['traced_tokens']:,} traced tokens, {scores['learnable_value_tokens']:,} "
          f"learnable value tokens); {result['wall_seconds']:.0f} s")
    print(format_scores(scores, summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
