"""The synthetic control: does the method recover learning times where the truth is known?

    python benchmarks/synthetic_control.py [--out DIR] [--quick] [--set KEY=VALUE ...]

Trains the `synthetic` preset (corpus source synthetic:facts: lines `Entity relation value` with
Zipf-distributed entities, stages/corpus/synthetic.py) with dense log-spaced checkpoints, traces,
fits and computes the spectrum, then reads the planted truth of every traced token
(synthetic.planted) and prints, each beside its goal:

- the Spearman correlation between the fitted learning time (mu of the dominant event of a value
  token classified `learned`) and the planted difficulty, the fact's count in the training split
  (goal <= -0.9: the sign is negative, a more frequent fact is learned earlier);
- the share of planted-learnable value tokens classified `learned`;
- the reconstruction R^2 of -dL/dln(step) held out after warmup (goal >= 0.95);

and a table of the value tokens by count bin (share learned, median learning step). When the
trainer keeps averaged weights (train.avg), the averaged series is traced, fitted and scored too,
beside the raw one. Resumable: a rerun with the same --out skips training and tracing when they
are done (fit and spectrum, seconds, are computed again). Writes DIR/synthetic_control.json, with
the seconds of every call. `--quick` is a seconds-long run for tests (its figures mean nothing).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import resource
import sys
import time
from pathlib import Path

import _common  # HF_HUB_OFFLINE before transformers is imported; the machine header
import numpy as np

SERIES = ("raw", "avg")  # the preset keeps averaged weights (train.avg=ema)
GOAL_SPEARMAN = -0.9
GOAL_R2 = 0.95
RISE_NATS = 0.5  # fit.min_drop_nats: a change the fitter counts as an event
COUNT_BINS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 10**9)
QUICK = ["corpus.max_chars=300000", "tokens.vocab_size=2048", "model.preset=llama-100k", "train.steps=24",
         "train.batch_size=4", "train.seq_len=64", "train.warmup_steps=2", "train.ckpt_per_decade=6",
         "train.val_seqs=4", "trace.n_seqs=24", "spectrum.block_size=2"]


def run_stages(out: Path, sets: list[str]) -> dict:
    """train, then trace, fit and spectrum of each weight series; each stage skips when done.
    Returns the seconds of each stage in this call (the manifest keeps the seconds it took)."""
    from tokenclock.config import load_config
    from tokenclock.pipeline import train
    from tokenclock.rundir import RunDir
    from tokenclock.stages.fit.stage import fit
    from tokenclock.stages.spectrum.stage import spectrum
    from tokenclock.stages.trace.stage import trace

    cfg = load_config("synthetic", sets)
    seconds = {}
    t = time.time()
    train(out, cfg, progress=False)
    seconds["train"] = time.time() - t
    for w in SERIES:
        run = RunDir(out, w)
        tcfg = dataclasses.replace(cfg.trace, weights=w)
        for name, fn in (("trace", lambda: trace(run.root, tcfg, progress=False)),
                         ("fit", lambda: fit(run, cfg.fit, progress=False)),
                         ("spectrum", lambda: spectrum(run, cfg.spectrum, progress=False))):
            t = time.time()
            fn()
            seconds[f"{name}_{w}"] = time.time() - t
    return {k: round(v, 1) for k, v in seconds.items()}


def dominant_mu(events: dict, n_tok: int) -> np.ndarray:
    """mu of each token's largest-|a| event (the one its class is decided by); NaN without one."""
    tok, a, mu = (np.asarray(events[k]) for k in ("tok_idx", "a", "mu"))
    order = np.lexsort((-np.abs(a), tok))  # by token, largest |a| first
    first = np.ones(len(order), dtype=bool)
    first[1:] = tok[order][1:] != tok[order][:-1]
    out = np.full(n_tok, np.nan)
    out[tok[order][first]] = mu[order][first]
    return out


def half_drop_steps(loss_kn: np.ndarray, steps: np.ndarray, after_step: int) -> np.ndarray:
    """A model-free learning step per token, (N,): the first checkpoint at or after after_step
    where the loss is at or below the midpoint of its loss there and its final loss (the least of
    the last three checkpoints); NaN when the drop is under 1 nat."""
    k0 = int(np.searchsorted(steps, after_step))
    start, final = loss_kn[k0], loss_kn[-3:].min(0)
    below = loss_kn[k0:] <= ((start + final) / 2)[None, :]
    out = steps[k0:][below.argmax(0)].astype(np.float64)
    out[(start - final < 1.0) | ~below.any(0)] = np.nan
    return out


def rise_before(loss_kn: np.ndarray, steps: np.ndarray, until: np.ndarray) -> np.ndarray:
    """Per token, the largest rise of its loss above an earlier checkpoint's, at checkpoints before
    `until` (a step per token), (N,) nats: a rise the token's later fall must undo, which takes
    events of its own."""
    before = steps[:, None] < np.nan_to_num(until, nan=np.inf)[None, :]
    x = np.where(before, loss_kn, np.nan)
    run_min = np.fmin.accumulate(np.nan_to_num(x, nan=np.inf), axis=0)
    return np.nanmax(np.where(before, x - run_min, 0.0), axis=0)


def learning_times(run, truth: dict, after_step: int) -> dict:
    """Spearman of the fitted learning times against the planted counts, the share learned, the
    same figures by count bin, and the model-free ceiling (half_drop_steps)."""
    from scipy.stats import spearmanr

    from tokenclock.artifacts import read_npy, read_parquet

    toks = read_parquet(run.fit_tokens, columns=["tok_idx", "class"])
    cls = np.asarray(toks["class"], dtype=object)
    events = read_parquet(run.fit_events, columns=["tok_idx", "a", "mu"])
    mu = dominant_mu(events, len(cls))
    fitted_rise = np.zeros(len(cls), dtype=bool)
    fitted_rise[np.asarray(events["tok_idx"])[np.asarray(events["a"]) < 0]] = True
    count, learnable = truth["fact_count"], truth["learnable"]
    learned = learnable & (cls == "learned") & np.isfinite(mu)
    steps = np.asarray(read_parquet(run.trace_axis, columns=["step"])["step"])
    loss = np.asarray(read_npy(run.trace_loss)[:, learnable], np.float64)  # (K, learnable)
    t_half = np.full(len(cls), np.nan)
    t_half[learnable] = half_drop_steps(loss, steps, after_step)
    halved = learnable & np.isfinite(t_half)
    rise = rise_before(loss, steps, np.fmin(t_half[learnable], max(after_step, steps[1])))

    def rho(x, y, m):
        return float(spearmanr(x[m], y[m]).statistic) if m.sum() > 2 else float("nan")

    classes, n = np.unique(cls[learnable], return_counts=True)
    rows = []
    for lo, hi in zip(COUNT_BINS[:-1], COUNT_BINS[1:]):
        inbin = learnable & (count >= lo) & (count < hi)
        done = inbin & learned
        rows.append({"count_lo": lo, "count_hi": hi - 1 if hi < 10**9 else None, "value_tokens": int(inbin.sum()),
                     "share_learned": float(done.sum() / inbin.sum()) if inbin.any() else None,
                     "median_learning_step": float(math.exp(np.median(mu[done]))) if done.any() else None,
                     "median_half_drop_step": float(np.median(t_half[inbin & halved])) if (inbin & halved).any()
                     else None})
    return {
        "spearman_mu_vs_count": rho(mu, count, learned),
        "learned_value_tokens": int(learned.sum()),
        "learnable_value_tokens": int(learnable.sum()),
        "share_learned": float(learned.sum() / max(learnable.sum(), 1)),
        "class_share_learnable": {str(c): float(k / max(learnable.sum(), 1)) for c, k in zip(classes, n)},
        "spearman_half_drop_vs_count": rho(t_half, count, halved),
        "half_drop_value_tokens": int(halved.sum()),
        "spearman_mu_vs_half_drop": rho(mu, np.log(t_half), learned & halved),
        "share_rise_in_warmup": float(np.mean(rise[np.isfinite(t_half[learnable])] > RISE_NATS)),
        "share_with_fitted_rise": float(fitted_rise[halved].mean()) if halved.any() else float("nan"),
        "by_count": rows,
    }


def misfit_by_kind(run, truth: dict, after: np.ndarray, smoothing: int) -> dict:
    """Where the in-sample reconstruction misses after warmup: per token kind (entity, relation,
    value, other), its share of the tokens and the R^2 after warmup were that kind's measured
    -dL/du reconstructed exactly (the other kinds as fitted)."""
    from tokenclock.artifacts import read_npy, read_parquet
    from tokenclock.scores import r2_score
    from tokenclock.stages.fit.stage import load_axis
    from tokenclock.stages.spectrum.reconstruct import measured_derivative, reconstruct_derivative

    u, keep = load_axis(run, "step")
    loss = np.asarray(read_npy(run.trace_loss), np.float64)[np.asarray(keep, bool)]
    cols = ["tok_idx", "a", "mu", "width"]
    ev = {k: np.asarray(v) for k, v in read_parquet(run.fit_events, columns=cols).items()}
    n_tok = loss.shape[1]
    kinds = np.where((truth["kind"] == "value") & ~truth["learnable"], "value (not learnable)", truth["kind"])
    meas, rec = {}, {}
    for k in sorted(set(kinds)):
        m = kinds == k
        meas[k] = measured_derivative(loss[:, m].mean(1), u, smoothing) * m.mean()
        rec[k] = reconstruct_derivative({c: ev[c][m[ev["tok_idx"]]] for c in ("a", "mu", "width")}, n_tok, u)
    total_m, total_r = sum(meas.values()), sum(rec.values())
    out = {"r2_after_warmup": r2_score(total_r[after], total_m[after])}
    for k in meas:
        fixed = total_r - rec[k] + meas[k]
        out[k] = {"token_share": float((kinds == k).mean()),
                  "r2_after_warmup_if_exact": r2_score(fixed[after], total_m[after])}
    return out


def r2_from_steps(curve: dict, after_step: int) -> dict:
    """Where the held-out misfit lies: the reconstruction R^2 held out (alternating and block)
    over the checkpoints from after_step, 2x, 4x and 8x it on."""
    from tokenclock.scores import r2_score

    c = {k: np.asarray(v) for k, v in curve.items()}
    out = {}
    for f in (1, 2, 4, 8):
        late = c["step"] >= f * max(after_step, 1)
        held, block = late & c["heldout"], late & c["block_heldout"]
        out[str(f * max(after_step, 1))] = {
            "heldout": r2_score(c["dldu_heldout"][held], c["dldu_measured"][held]) if held.sum() > 2 else None,
            "block_heldout": r2_score(c["dldu_block_heldout"][block], c["dldu_measured"][block])
            if block.sum() > 2 else None}
    return out


def figures(run, truth: dict) -> dict:
    """The control's figures for one weight series of a run (a RunDir), against the planted truth."""
    from tokenclock.artifacts import read_json, read_parquet

    ssum = read_json(run.spectrum_summary)
    curve = read_parquet(run.spectrum_curve(), columns=["step", "after_warmup", "heldout", "block_heldout",
                                                       "dldu_measured", "dldu_heldout", "dldu_block_heldout"])
    out = learning_times(run, truth, int(ssum.get("after_step") or 0))
    out.update({k: ssum.get(k) for k in (
        "reconstruction_r2_heldout_after_warmup", "reconstruction_r2_heldout", "reconstruction_r2",
        "reconstruction_r2_after_warmup", "reconstruction_r2_block_heldout_after_warmup",
        "token_split_r2_after_warmup", "after_step")})
    out["r2_heldout_from_step"] = r2_from_steps(curve, int(ssum.get("after_step") or 0))
    out["misfit_by_kind"] = misfit_by_kind(run, truth, np.asarray(curve["after_warmup"], bool),
                                           int((ssum.get("config") or {}).get("smoothing", 2)))
    return out


def _cell(v, fmt: str) -> str:
    return format(v, fmt) if isinstance(v, (int, float)) and math.isfinite(v) else "n/a"


def format_figures(series: dict[str, dict]) -> str:
    """The printed table: one column per weight series, each figure beside its goal; then the
    diagnostics (model-free learning steps, misfit by token kind) and the count bins."""
    names = list(series)

    def row(label: str, key: str, fmt: str, goal: str = "") -> str:
        cells = "".join(f"{_cell(series[s].get(key), fmt):>14}" for s in names)
        return f"  {label:<52}{cells}   {goal}".rstrip()

    lines = [f"  {'':<52}" + "".join(f"{s:>14}" for s in names),
             row("Spearman(mu, planted count), learned value tokens", "spearman_mu_vs_count", ".3f",
                 f"goal <= {GOAL_SPEARMAN} (negative: more frequent, earlier)"),
             row("share of learnable value tokens classified learned", "share_learned", ".3f"),
             row("reconstruction R^2 held-out after warmup", "reconstruction_r2_heldout_after_warmup", ".3f",
                 f"goal >= {GOAL_R2}"),
             row("  held-out, all checkpoints", "reconstruction_r2_heldout", ".3f"),
             row("  block held-out after warmup", "reconstruction_r2_block_heldout_after_warmup", ".3f"),
             row("  in-sample after warmup", "reconstruction_r2_after_warmup", ".3f"),
             row("  token split after warmup", "token_split_r2_after_warmup", ".3f"),
             "  diagnostics",
             row("  Spearman(half-drop step, count): model-free", "spearman_half_drop_vs_count", ".3f"),
             row("  Spearman(mu, ln half-drop step), learned", "spearman_mu_vs_half_drop", ".3f"),
             row("  learned / learnable value tokens", "learned_value_tokens", "d"),
             row(f"  learnable values rising > {RISE_NATS} nats in warmup", "share_rise_in_warmup", ".3f"),
             row("  learnable values with a fitted rise (a < 0)", "share_with_fitted_rise", ".3f")]
    for step in series[names[0]]["r2_heldout_from_step"]:
        pairs = [[_cell(series[s]["r2_heldout_from_step"][step][k], ".3f") for k in ("heldout", "block_heldout")]
                 for s in names]
        cells = "".join(f"{' / '.join(p):>14}" for p in pairs)
        lines.append(f"  {'  R^2 held-out / block held-out from step ' + step:<52}{cells}")
    kinds = list(series[names[0]]["misfit_by_kind"])[1:]
    lines.append("  in-sample R^2 after warmup if one kind of token were reconstructed exactly "
                 "(" + ", ".join(f"{s} {_cell(series[s]['misfit_by_kind']['r2_after_warmup'], '.3f')}"
                                 for s in names) + " as fitted)")
    for k in kinds:
        share = series[names[0]]["misfit_by_kind"][k]["token_share"]
        cells = "".join(f"{_cell(series[s]['misfit_by_kind'][k]['r2_after_warmup_if_exact'], '.3f'):>14}"
                        for s in names)
        lines.append(f"    {k + f' ({share:.0%} of tokens)':<50}{cells}")
    for s in names:
        lines.append(f"  {s}: learnable value tokens by planted count (the fact's lines in the training split)")
        lines.append(f"    {'count':>9} {'tokens':>7} {'learned':>8} {'median step':>12} {'half-drop step':>15}")
        for r in series[s]["by_count"]:
            if r["value_tokens"]:
                span = f"{r['count_lo']}-{r['count_hi'] if r['count_hi'] is not None else ''}"
                if r["count_hi"] == r["count_lo"]:
                    span = str(r["count_lo"])
                lines.append(f"    {span:>9} {r['value_tokens']:>7} {_cell(r['share_learned'], '.2f'):>8} "
                             f"{_cell(r['median_learning_step'], '.0f'):>12} "
                             f"{_cell(r['median_half_drop_step'], '.0f'):>15}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="runs/synthetic-control", help="run directory (reruns resume it)")
    ap.add_argument("--quick", action="store_true", help="a seconds-long run for tests")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override")
    args = ap.parse_args(argv)
    _common.machine_header(yardstick=not args.quick)

    from tokenclock.rundir import RunDir
    from tokenclock.stages.corpus.synthetic import planted

    out = Path(args.out)
    sets = (QUICK if args.quick else []) + args.set
    t0 = time.time()
    seconds = run_stages(out, sets)
    cpu = sum(getattr(resource.getrusage(who), f) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)
              for f in ("ru_utime", "ru_stime"))
    truth = planted(out)
    result = {"series": {w: figures(RunDir(out, w), truth) for w in SERIES},
              "overrides": sets, "seconds": seconds, "wall_seconds": round(time.time() - t0, 1),
              "cpu_seconds": round(cpu, 1),
              "value_tokens": int((truth["kind"] == "value").sum()), "traced_tokens": int(len(truth["tok_idx"])),
              "command": " ".join(["python benchmarks/synthetic_control.py", *(argv if argv is not None
                                                                               else sys.argv[1:])])}
    path = out / "synthetic_control.json"
    before = json.loads(path.read_text()).get("calls", []) if path.is_file() else []
    result["calls"] = before + [{k: result[k] for k in ("seconds", "wall_seconds", "cpu_seconds")}]
    path.write_text(json.dumps(result, indent=2))
    earlier = ", ".join(f"{c['wall_seconds']:.0f} s" for c in before)
    print(f"synthetic control: {out} ({result['traced_tokens']:,} traced tokens, "
          f"{result['value_tokens']:,} value tokens); this call {result['wall_seconds']:.0f} s "
          f"({', '.join(f'{k} {v:.0f}' for k, v in seconds.items())}), {result['cpu_seconds']:.0f} CPU s"
          + (f"; earlier calls {earlier}" if before else ""))
    print(format_figures(result["series"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
