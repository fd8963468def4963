"""Reshaped vs uniform training at matched tokens: the paper's "11% faster validation-loss reduction".

    python benchmarks/reshape_bench.py [--out /tmp/reshape-bench --seeds 0 1 2 --steps 300]

One corpus and tokenizer (built once, copied into every run), one small proxy reference run
(traced on a pool of training windows), then every arm x seed trains the same model on the same
number of tokens and is scored on its own validation loss at each checkpoint (ckpt/index.parquet;
arms of one seed share the validation set and the initial weights). Prints, per arm, the speed-up
1 - steps_arm(L*) / steps_uniform(L*) at the uniform run's validation loss L* at 25/50/75/100% of
its steps (log-step interpolation), its mean and spread over seeds, and the same figure charged
with the reference's compute (tokens x params, training + pool trace). Writes results.json,
results.parquet and report/index.html under --out. `--report-only` redraws from results.json.
"""
from __future__ import annotations

import argparse
import dataclasses
import math
import shutil
import time
from pathlib import Path

import numpy as np

ARMS = ("uniform", "learnable-now", "easy-to-hard", "hard-to-easy", "loss-based")
TARGETS = (0.25, 0.5, 0.75, 1.0)


def steps_to_reach(steps: np.ndarray, val: np.ndarray, target: float) -> float:
    """First step where the validation curve reaches `target`, interpolated linearly in ln(step);
    NaN when it never does."""
    ok = (steps > 0) & np.isfinite(val)
    s, v = steps[ok].astype(float), val[ok]
    hit = np.nonzero(v <= target)[0]
    if not len(hit):
        return float("nan")
    k = hit[0]
    if k == 0:
        return float(s[0])
    g = (v[k - 1] - target) / max(v[k - 1] - v[k], 1e-12)
    return float(math.exp(math.log(s[k - 1]) + g * (math.log(s[k]) - math.log(s[k - 1]))))


def loss_at(steps: np.ndarray, val: np.ndarray, step: float) -> float:
    ok = steps > 0
    return float(np.interp(math.log(step), np.log(steps[ok].astype(float)), val[ok]))


def base_overrides(args, texts: str | None) -> list[str]:
    src = [f"corpus.sources=[{texts}]", "corpus.max_chars=null"] if texts else [f"corpus.max_chars={args.max_chars}"]
    return src + [f"tokens.vocab_size={args.vocab}", f"model.preset={args.preset}",
                  f"train.steps={args.steps}", f"train.batch_size={args.batch}",
                  f"train.seq_len={args.seq_len}", "train.threads=1", f"train.val_seqs={args.val_seqs}",
                  f"train.ckpt_per_decade={args.ckpt_per_decade}", f"train.ckpt_linear_every={args.steps // 8}",
                  f"train.lr_peak={args.lr}"]


def run_train(base: Path, out: Path, sets: list[str]) -> dict:
    from tokenclock.artifacts import read_parquet
    from tokenclock.config import load_config
    from tokenclock.pipeline import train

    if not (out / "tokens").is_dir():
        out.mkdir(parents=True, exist_ok=True)
        for d in ("corpus", "tokens"):
            shutil.copytree(base / d, out / d)
        shutil.copy(base / "manifest.json", out / "manifest.json")
    t0 = time.time()
    summary = train(out, load_config("tiny", sets), progress=False)
    idx = read_parquet(out / "ckpt" / "index.parquet")
    return {"summary": summary, "seconds": time.time() - t0, "step": idx["step"].tolist(),
            "val_loss": idx["val_loss"].tolist()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="/tmp/reshape-bench")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--arms", nargs="+", default=list(ARMS))
    ap.add_argument("--preset", default="llama-100k")
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--seq-len", type=int, default=64)
    ap.add_argument("--lr", type=float, default=0.004)
    ap.add_argument("--vocab", type=int, default=2048)
    ap.add_argument("--max-chars", type=int, default=3_000_000, help="slice of the built-in corpus")
    ap.add_argument("--texts", help="a text folder instead of the built-in corpus")
    ap.add_argument("--val-seqs", type=int, default=128)
    ap.add_argument("--ckpt-per-decade", type=int, default=10)
    ap.add_argument("--ref-steps", type=int, default=150, help="proxy reference: steps")
    ap.add_argument("--ref-hidden", type=int, default=32, help="proxy reference: hidden size")
    ap.add_argument("--ref-seed", type=int, default=100)
    ap.add_argument("--pool-size", type=int, default=512)
    ap.add_argument("--max-ckpts", type=int, default=10)
    ap.add_argument("--window", type=float, default=0.2)
    ap.add_argument("--mix", type=float, default=0.5)
    ap.add_argument("--sharpness", type=float, default=2.0)
    ap.add_argument("--report-only", action="store_true")
    args = ap.parse_args()
    out = Path(args.out)
    if args.report_only:
        from tokenclock.stages.reshape.stage import reshape_report

        print(f"report: {reshape_report(out)}")
        return

    from tokenclock.artifacts import write_json, write_parquet
    from tokenclock.config import load_config
    from tokenclock.stages.data.corpus import build_corpus
    from tokenclock.stages.data.tokens import tokenize
    from tokenclock.stages.reshape.profiles import ReshapeConfig
    from tokenclock.stages.reshape.stage import compute_params, reshape

    t_all = time.time()
    sets = base_overrides(args, args.texts)
    base = out / "base"
    cfg = load_config("tiny", sets)
    build_corpus(base, cfg.corpus, progress=False)
    tmeta = tokenize(base, cfg.tokens, progress=False)
    print(f"corpus: {tmeta['train_tokens']:,} train tokens, {tmeta['val_tokens']:,} val tokens, vocab {tmeta['vocab_size']}")

    ref_sets = sets + [f"train.steps={args.ref_steps}", f"model.hidden_size={args.ref_hidden}",
                       "model.num_heads=2", f"model.intermediate_size={3 * args.ref_hidden}",
                       f"seed={args.ref_seed}", f"train.warmup_steps={max(1, args.ref_steps // 20)}"]
    ref = run_train(base, out / "ref", ref_sets)
    print(f"reference: {ref['summary']['n_params']:,} non-embedding params, {args.ref_steps} steps, "
          f"final val {ref['val_loss'][-1]:.3f} ({ref['seconds']:.0f} s)")
    vocab = tmeta["vocab_size"]
    new_params = compute_params(dataclasses.asdict(cfg.model), vocab)
    new_flops = 6.0 * new_params * args.steps * args.batch * args.seq_len

    runs, metas = {}, {}
    for seed in args.seeds:
        for arm in args.arms:
            sched = out / "schedules" / f"{arm}-s{seed}"
            t0 = time.time()
            meta = reshape(out / "ref", sched, ReshapeConfig(
                strategy=arm, pool_size=args.pool_size, window=args.window, mix=args.mix,
                sharpness=args.sharpness, max_ckpts=args.max_ckpts, seed=seed, steps=args.steps,
                batch_size=args.batch, seq_len=args.seq_len, device="cpu"), progress=False)
            metas[arm] = meta
            r = run_train(base, out / "runs" / f"{arm}-s{seed}",
                          sets + [f"seed={seed}", f"train.data_schedule={sched}"])
            runs[(arm, seed)] = r
            print(f"  {arm:<14} seed {seed}: final val {r['val_loss'][-1]:.4f} "
                  f"({time.time() - t0:.0f} s)", flush=True)

    ref_cost = metas[args.arms[0]]["cost"]
    ref_share = ref_cost["ref_flops"] / new_flops
    rows = []
    for arm in args.arms:
        for seed in args.seeds:
            u, r = runs[("uniform", seed)], runs[(arm, seed)]
            us, uv = np.array(u["step"]), np.array(u["val_loss"])
            rs, rv = np.array(r["step"]), np.array(r["val_loss"])
            for q in TARGETS:
                target = loss_at(us, uv, q * args.steps)
                s_u = steps_to_reach(us, uv, target)
                s_r = steps_to_reach(rs, rv, target)
                sp = 1 - s_r / s_u
                # the uniform arm needs no reference: only reshaped arms are charged for it
                charge = 0.0 if arm == "uniform" else ref_cost["ref_flops"]
                sp_cost = 1 - (s_r * new_flops / args.steps + charge) / (s_u * new_flops / args.steps)
                rows.append({"arm": arm, "seed": seed, "target_frac": q, "target_loss": target,
                             "steps_uniform": s_u, "steps_arm": s_r, "speedup": sp,
                             "speedup_with_ref_cost": sp_cost,
                             "final_val_delta": float(rv[-1] - uv[-1])})
    write_parquet(out / "results.parquet", {k: [r[k] for r in rows] for k in rows[0]})
    print(f"\nreference cost: {ref_share:.1%} of one training run's compute "
          f"(proxy {ref_cost['ref_params']:,} params x {ref_cost['ref_train_tokens']:,} train tokens x6 + "
          f"{ref_cost['pool_trace_tokens']:,} traced tokens x2; new run {new_params:,} params x "
          f"{args.steps * args.batch * args.seq_len:,} tokens x6)")
    print(f"speed-up = 1 - steps_arm(L*) / steps_uniform(L*), L* = uniform val loss at 25/50/75/100% of steps; "
          f"mean +- sd over seeds {args.seeds} [min, max]; n/r = seeds that never reached L*")
    hdr = f"{'arm':<14}" + "".join(f"{f'L*@{int(q * 100)}%':>24}" for q in TARGETS) + f"{'@100% incl. ref':>24}{'dL final':>18}"
    print(hdr)
    summary = {}
    for arm in args.arms:
        cells, s_arm = [], {}
        for q in TARGETS + ("cost",):
            key = "speedup_with_ref_cost" if q == "cost" else "speedup"
            vals = np.array([r[key] for r in rows if r["arm"] == arm and r["target_frac"] == (1.0 if q == "cost" else q)])
            fin = vals[np.isfinite(vals)]
            nr = len(vals) - len(fin)
            m = float(np.mean(fin)) if len(fin) else float("nan")
            sd = float(np.std(fin, ddof=1)) if len(fin) > 1 else float("nan")
            s_arm[str(q)] = {"mean": m, "sd": sd, "min": float(fin.min()) if len(fin) else None,
                             "max": float(fin.max()) if len(fin) else None, "not_reached": nr,
                             "per_seed": vals.tolist()}
            cells.append(f"{m:+7.1%} +-{sd:5.1%}" + (f" n/r{nr}" if nr else "      ") if len(fin) else f"{'never':>18}")
        dl = np.array([r["final_val_delta"] for r in rows if r["arm"] == arm and r["target_frac"] == 1.0])
        s_arm["final_val_delta"] = {"mean": float(dl.mean()), "sd": float(dl.std(ddof=1)) if len(dl) > 1 else None,
                                    "per_seed": dl.tolist()}
        summary[arm] = s_arm
        print(f"{arm:<14}" + "".join(f"{c:>24}" for c in cells) + f"{dl.mean():+10.4f} +-{dl.std(ddof=1) if len(dl) > 1 else 0:.4f}")
    write_json(out / "results.json", {
        "args": vars(args), "ref_cost_share": ref_share, "ref_cost": ref_cost, "new_params": new_params,
        "new_flops": new_flops, "summary": summary, "rows": rows,
        "curves": {f"{a}|{s}": {"step": r["step"], "val_loss": r["val_loss"]} for (a, s), r in runs.items()},
        "seconds": time.time() - t_all})
    try:
        from tokenclock.stages.reshape.stage import reshape_report

        print(f"report: {reshape_report(out)}")
    except ImportError:
        print("report: reshape_report not available; rerun with --report-only")
    print(f"total {time.time() - t_all:.0f} s; results in {out}/results.json and results.parquet")


if __name__ == "__main__":
    main()
