"""Reshaped vs uniform training under the protocol of issue #17 (the paper's "11% faster").

    python benchmarks/reshape_bench.py [--out /tmp/reshape-bench] [--seeds 0 1 2] [--arms ...] [--quick]
    python benchmarks/reshape_bench.py --out DIR --report-only

Protocol: one corpus and tokenizer (built once, copied into every run); per seed, every arm trains
the same model (same initial weights), on the same number of tokens, scored on the same validation
windows at every checkpoint (ckpt/index.parquet), with the demo's train settings (presets/demo-large.yaml:
llama-500k, 2,000 steps of 16 x 256, cosine to 10%, averaged weights). Baselines: `uniform` (the
demo's fully decayed cosine) and `uniform-wsd`; `-const` / `-wsd` arms change only the lr schedule,
and every run's averaged-weight series (train.avg: ema, scored on the same windows) is an extra
series `ARM+avg`. One proxy (a smaller model) is traced once on a pool of training windows and
fitted once; every reshaped arm (sequence- and token-level) uses that one scoring pass.

Per arm and series: speed-up 1 - steps_arm(L*) / steps_uniform(L*) at the uniform cosine run's
final validation loss L* (log-step interpolation, per seed), the loss gap at matched tokens (final
validation loss minus uniform's), each as mean and SD over seeds; a mean speed-up within two seed
SDs is "no gain". The proxy's compute (training + pool trace, FLOPs = 6 x params x tokens and
2 x params x traced tokens; and seconds, fit included) is stated and charged in a second speed-up.
Prints the proxy check (share of its learning events censored at its last checkpoint) and the pool
check (draws of a pool window against the uniform order's draws of a token). Writes results.json,
results.parquet and report/index.html under --out; `--report-only` redraws the report.
"""
from __future__ import annotations

import argparse
import dataclasses
import math
import shutil
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/: _common, reshape_report

# arm -> (reshape strategy, train.schedule)
ARM_SPECS = {
    "uniform": ("uniform", "cosine"), "uniform-wsd": ("uniform", "wsd"), "uniform-const": ("uniform", "constant"),
    "learnable-now": ("learnable-now", "cosine"), "easy-to-hard": ("easy-to-hard", "cosine"),
    "hard-to-easy": ("hard-to-easy", "cosine"), "loss-based": ("loss-based", "cosine"),
    "token-learnable": ("token-learnable", "cosine"),
    "learnable-now-wsd": ("learnable-now", "wsd"), "token-learnable-wsd": ("token-learnable", "wsd"),
    "learnable-now-const": ("learnable-now", "constant"), "token-learnable-const": ("token-learnable", "constant"),
}
BASELINE = "uniform"
# --quick: a tiny configuration for the test (its figures mean nothing)
QUICK = {"preset": "llama-100k", "steps": 24, "batch": 4, "seq_len": 32, "vocab": 512, "val_seqs": 8,
         "ckpt_per_decade": 5, "ref_preset": "llama-100k", "ref_hidden": 16, "ref_steps": 24, "max_ckpts": 5,
         "check_seqs": 16, "arms": ["uniform", "learnable-now", "token-learnable-wsd"]}


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


def spread(vals) -> dict:
    """mean, SD (ddof 1), min, max of the finite values; not_reached = the NaN ones."""
    v = np.asarray(vals, dtype=float)
    f = v[np.isfinite(v)]
    return {"mean": float(f.mean()) if len(f) else None, "sd": float(f.std(ddof=1)) if len(f) > 1 else None,
            "min": float(f.min()) if len(f) else None, "max": float(f.max()) if len(f) else None,
            "not_reached": int(len(v) - len(f)), "per_seed": [None if not math.isfinite(x) else float(x) for x in v]}


def verdict(s: dict) -> str:
    """'gain' only when every seed reached L* and the mean speed-up exceeds two seed SDs."""
    if s["mean"] is None or s["not_reached"] or s["sd"] is None:
        return "no gain"
    return "gain" if s["mean"] > 2 * s["sd"] else ("loss" if s["mean"] < -2 * s["sd"] else "no gain")


def base_sets(args) -> list[str]:
    return [f"corpus.sources=[{args.texts}]", "corpus.max_chars=null"] if args.texts else \
        ([f"corpus.max_chars={args.max_chars}"] if args.max_chars else [])


def train_sets(args, preset: str, steps: int) -> list[str]:
    return [f"tokens.vocab_size={args.vocab}", f"model.preset={preset}", f"train.steps={steps}",
            f"train.batch_size={args.batch}", f"train.seq_len={args.seq_len}", "train.threads=1",
            f"train.val_seqs={args.val_seqs}", f"train.ckpt_per_decade={args.ckpt_per_decade}",
            "train.keep_state_steps=[]", f"train.warmup_steps={min(args.warmup, steps // 4)}"]


def _val_batch(run: Path, seed: int, n_seqs: int, seq_len: int):
    """The first n_seqs seeded validation windows of RUN's validation split."""
    from tokenclock.artifacts import read_npy
    from tokenclock.rundir import RunDir
    from tokenclock.windows import make_batch, val_offsets

    vstream = read_npy(RunDir(run).token_stream("val"), mmap=True)
    return make_batch(vstream, val_offsets(seed, len(vstream), n_seqs, seq_len), seq_len)[:n_seqs]


def _mean_loss(ckpt: Path, batch) -> float:
    import torch
    from transformers import AutoModelForCausalLM

    from tokenclock.forward import quiet_transformers, token_losses

    quiet_transformers()
    model = AutoModelForCausalLM.from_pretrained(ckpt, dtype=torch.float32).eval()
    return float(token_losses(model, batch, None, "cpu").mean())


def avg_curve(run: Path, cfg) -> list[float]:
    """Validation loss of every averaged-weight checkpoint (ckpt_avg/) on the run's own validation
    windows (the train stage scores the raw weights only)."""
    from tokenclock.rundir import RunDir

    batch = _val_batch(run, cfg.seed, cfg.train.val_seqs, cfg.train.seq_len)
    avg = RunDir(run, "avg")
    return [_mean_loss(avg.ckpt(step), batch) for step in avg.ckpt_steps()]


CHECK_SEED = 12345  # the check's validation windows: one set for every run and seed


def final_check(run: Path, n_seqs: int, seq_len: int) -> dict:
    """Validation loss of RUN's last checkpoint (raw, and averaged where kept) on N windows shared
    by every arm and seed: the final gap on more tokens than the per-seed curve's windows (cached
    in RUN/bench_check.json)."""
    from tokenclock.artifacts import read_json, write_json
    from tokenclock.rundir import RunDir

    cache = run / "bench_check.json"
    key = f"{n_seqs}x{seq_len}@{CHECK_SEED}"
    got = read_json(cache) if cache.is_file() else {}
    if key not in got:
        batch = _val_batch(run, CHECK_SEED, n_seqs, seq_len)
        res = {}
        for series, rd in (("raw", RunDir(run)), ("avg", RunDir(run, "avg"))):
            if rd.ckpt_steps():
                res[series] = _mean_loss(rd.ckpt(max(rd.ckpt_steps())), batch)
        got[key] = res
        write_json(cache, got)
    return got[key]


def run_train(base: Path, out: Path, sets: list[str], with_avg: bool) -> dict:
    """Train (or skip, when finished) one run on a copy of BASE's corpus and tokens; its curves."""
    from tokenclock.artifacts import read_json, read_parquet, write_json
    from tokenclock.config import load_config
    from tokenclock.pipeline import train

    if not (out / "tokens").is_dir():
        out.mkdir(parents=True, exist_ok=True)
        for d in ("corpus", "tokens"):
            shutil.copytree(base / d, out / d)
        shutil.copy(base / "manifest.json", out / "manifest.json")
    cfg = load_config("demo-large", sets)
    t0 = time.time()
    summary = train(out, cfg, progress=False)
    seconds = time.time() - t0
    cache = out / "bench_curves.json"  # the benchmark's own file: curves and the seconds training took
    if cache.is_file():
        return read_json(cache)
    idx = read_parquet(out / "ckpt" / "index.parquet")
    res = {"summary": summary, "seconds": seconds, "step": idx["step"].tolist(), "val_loss": idx["val_loss"].tolist()}
    if with_avg and cfg.train.avg == "ema":
        res["val_loss_avg"] = avg_curve(out, cfg)
    write_json(cache, res)
    return res


def run_job(args, base: Path, out: Path, arm: str, seed: int) -> tuple:
    """run_train's arguments for one arm and seed. The uniform-order arms train without a schedule:
    the `uniform` strategy's schedule is the default order exactly (test_uniform_schedule_is_the_default_order),
    so they need not wait for the proxy."""
    strategy, lr_schedule = ARM_SPECS[arm]
    sets = base_sets(args) + train_sets(args, args.preset, args.steps) + [f"seed={seed}", f"train.schedule={lr_schedule}"]
    if strategy != "uniform":
        sets.append(f"train.data_schedule={out / 'schedules' / f'{arm}-s{seed}'}")
    return base, out / "runs" / f"{arm}-s{seed}", sets, not args.no_avg


def proxy_job(args, base: Path, out: Path, pool_size: int, reshaped: list) -> tuple[dict, dict]:
    """Train the proxy, trace and fit its pool once, and write every reshaped (arm, seed)'s schedule
    (one scoring pass serves them all)."""
    from tokenclock.stages.reshape.config import ReshapeConfig
    from tokenclock.stages.reshape.stage import reshape

    ref_sets = base_sets(args) + train_sets(args, args.ref_preset, args.ref_steps) + [f"seed={args.ref_seed}"]
    if args.ref_hidden:
        ref_sets += [f"model.hidden_size={args.ref_hidden}", "model.num_heads=2", "model.num_kv_heads=2",
                     f"model.intermediate_size={3 * args.ref_hidden}"]
    ref = run_train(base, out / "ref", ref_sets, with_avg=False)
    metas = {}
    for arm, seed in reshaped:
        metas[(arm, seed)] = reshape(out / "ref", out / "schedules" / f"{arm}-s{seed}", ReshapeConfig(
            strategy=ARM_SPECS[arm][0], pool_size=pool_size, window=args.window, mix=args.mix,
            sharpness=args.sharpness, max_ckpts=args.max_ckpts, seed=seed, steps=args.steps,
            batch_size=args.batch, seq_len=args.seq_len, token_floor=args.token_floor, device="cpu"),
            progress=False)
    return ref, metas


def _exit_with_parent(parent: int) -> None:
    """In each worker: exit when the benchmark's process is gone (a `kill` of it, not only Ctrl-C
    of the whole group, stops its runs; they resume on the next start)."""
    import os
    import threading

    def watch():
        while os.getppid() == parent:
            time.sleep(2)
        os._exit(1)

    threading.Thread(target=watch, daemon=True).start()


def train_all(args, base: Path, out: Path, pool_size: int, jobs: dict) -> tuple[dict, dict, dict]:
    """The proxy (with its pool trace and schedules) and every (arm, seed) run, `args.jobs` at a time
    (one thread each; 1 = in this process, in order). With two or more, the uniform-order arms train
    while the proxy does; the reshaped arms start once their schedules exist."""
    def done(key, r):
        print(f"  {key[0]:<22} seed {key[1]}: final val {r['val_loss'][-1]:.4f}"
              + (f", averaged {r['val_loss_avg'][-1]:.4f}" if r.get("val_loss_avg") else "")
              + f" ({r['seconds']:.0f} s)", flush=True)
        return r

    reshaped = [k for k in jobs if ARM_SPECS[k[0]][0] != "uniform"]
    if args.jobs <= 1:
        ref, metas = proxy_job(args, base, out, pool_size, reshaped)
        return ref, metas, {k: done(k, run_train(*job)) for k, job in jobs.items()}
    import multiprocessing
    import os
    from concurrent.futures import ProcessPoolExecutor, as_completed

    with ProcessPoolExecutor(args.jobs, mp_context=multiprocessing.get_context("spawn"),
                             initializer=_exit_with_parent, initargs=(os.getpid(),)) as ex:
        proxy = ex.submit(proxy_job, args, base, out, pool_size, reshaped)
        futs = {ex.submit(run_train, *job): k for k, job in jobs.items() if k not in reshaped}
        ref, metas = proxy.result()
        print(f"  proxy trained and its pool scored ({ref['seconds']:.0f} s of training)", flush=True)
        futs.update({ex.submit(run_train, *jobs[k]): k for k in reshaped})
        return ref, metas, {futs[f]: done(futs[f], f.result()) for f in as_completed(futs)}


def auto_pool(args, n_tokens: int) -> int:
    """The smallest pool whose windows the reshaped slots draw no more often than the uniform
    order draws a token (at least once), capped by the windows the training split holds."""
    slots = (1 - args.mix) * args.steps * args.batch
    epochs = args.steps * args.batch * args.seq_len / n_tokens
    return int(min((n_tokens - 1) // (args.seq_len + 1), math.ceil(slots / max(1.0, epochs))))


def parse(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="/tmp/reshape-bench")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--arms", nargs="+", default=list(ARM_SPECS), choices=list(ARM_SPECS))
    ap.add_argument("--preset", default="llama-500k", help="the new run's model (the demo's)")
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--seq-len", type=int, default=256)
    ap.add_argument("--warmup", type=int, default=50)
    ap.add_argument("--vocab", type=int, default=4096)
    ap.add_argument("--max-chars", type=int, default=0, help="slice of the built-in corpus (0 = the demo's)")
    ap.add_argument("--texts", help="a text folder instead of the built-in corpus")
    ap.add_argument("--val-seqs", type=int, default=32)
    ap.add_argument("--ckpt-per-decade", type=int, default=16)
    ap.add_argument("--ref-preset", default="llama-100k", help="proxy: model preset (smaller = cheaper)")
    ap.add_argument("--ref-hidden", type=int, default=0, help="proxy: hidden size override (0 = the preset's)")
    ap.add_argument("--ref-steps", type=int, default=2000, help="proxy: steps")
    ap.add_argument("--ref-seed", type=int, default=100)
    ap.add_argument("--pool-size", type=int, default=0, help="0 = the no-repetition size (auto_pool)")
    ap.add_argument("--max-ckpts", type=int, default=10, help="proxy checkpoints the pool is traced at")
    ap.add_argument("--window", type=float, default=0.2)
    ap.add_argument("--mix", type=float, default=0.5)
    ap.add_argument("--sharpness", type=float, default=2.0)
    ap.add_argument("--token-floor", type=float, default=0.1)
    ap.add_argument("--no-avg", action="store_true", help="skip the averaged-weight series")
    ap.add_argument("--check-seqs", type=int, default=512,
                    help="validation windows (one set for every seed) the final checkpoints are also scored on; 0 = skip")
    ap.add_argument("--jobs", type=int, default=1, help="runs trained at once (one thread each)")
    ap.add_argument("--quick", action="store_true", help="a tiny configuration (< 3 min on 2 cores) for tests")
    ap.add_argument("--report-only", action="store_true")
    args = ap.parse_args(argv)
    if args.quick:
        for k, v in QUICK.items():
            setattr(args, k, v)
    if BASELINE not in args.arms:
        args.arms = [BASELINE] + args.arms
    if all(ARM_SPECS[a][0] == "uniform" for a in args.arms):
        ap.error("--arms names no reshaped arm: add one (learnable-now, token-learnable, ...)")
    return args


def main(argv=None) -> int:
    args = parse(argv)
    out = Path(args.out)
    from reshape_report import reshape_report

    if args.report_only:
        print(f"report: {reshape_report(out)}")
        return 0
    if not args.quick:  # the machine header (tests run --quick in-process and quietly)
        from _common import machine_header

        machine_header()
    from tokenclock.artifacts import read_json
    from tokenclock.config import load_config
    from tokenclock.stages.corpus.stage import build_corpus
    from tokenclock.stages.tokens.stage import tokenize
    from tokenclock.testing import write_sample_texts

    t_all = time.time()
    if args.quick and not args.texts:
        args.texts = str(write_sample_texts(out / "texts"))
    base = out / "base"
    cfg = load_config("demo-large", base_sets(args) + train_sets(args, args.preset, args.steps))
    build_corpus(base, cfg.corpus, progress=False)
    tmeta = tokenize(base, cfg.tokens, progress=False)
    n_tokens = tmeta["train_tokens"]
    print(f"corpus: {n_tokens:,} train tokens, {tmeta['val_tokens']:,} val tokens, vocab {tmeta['vocab_size']}; "
          f"a run reads {args.steps * args.batch * args.seq_len / n_tokens:.2f} epochs")

    pool_size = args.pool_size or auto_pool(args, n_tokens)
    from tokenclock.stages.reshape.stage import compute_params

    new_params = compute_params(dataclasses.asdict(cfg.model), tmeta["vocab_size"])
    flops_per_step = 6.0 * new_params * args.batch * args.seq_len
    jobs = {(arm, seed): run_job(args, base, out, arm, seed) for seed in args.seeds for arm in args.arms}
    ref, metas, runs = train_all(args, base, out, pool_size, jobs)
    print(f"proxy: {args.ref_preset}{f' hidden {args.ref_hidden}' if args.ref_hidden else ''}, "
          f"{ref['summary']['n_params']:,} non-embedding params, {args.ref_steps} steps, "
          f"final val {ref['val_loss'][-1]:.3f} ({ref['seconds']:.0f} s)")
    runs = {k: runs[k] for k in jobs}  # seed-major order, as the jobs were listed
    check = {k: final_check(jobs[k][1], args.check_seqs, args.seq_len) for k in jobs} if args.check_seqs else {}

    m0 = next(iter(metas.values()))
    pool_info = read_json(out / "ref" / "reshape" / "pool" / "pool.json")
    proxy = {"params": m0["cost"]["ref_params"], "train_tokens": m0["cost"]["ref_train_tokens"],
             "pool_trace_tokens": m0["cost"]["pool_trace_tokens"], "flops": m0["cost"]["ref_flops"],
             "train_seconds": ref["seconds"], "pool_trace_seconds": pool_info.get("seconds"),
             "pool_fit_seconds": m0["scoring_seconds"]["pool_fit"], "pool_size": pool_size,
             "censored_share": m0["proxy_censored_share"], "final_val_loss": ref["val_loss"][-1]}
    base_flops = flops_per_step * args.steps
    proxy["share_of_one_run"] = proxy["flops"] / base_flops
    rows = []
    for (arm, seed), r in runs.items():
        u = runs[(BASELINE, seed)]
        us, uv = np.array(u["step"]), np.array(u["val_loss"])
        target = float(uv[-1])  # L*: the uniform cosine run's final validation loss
        s_u = steps_to_reach(us, uv, target)
        for series, key in (("raw", "val_loss"), ("avg", "val_loss_avg")):
            if not r.get(key):
                continue
            v = np.array(r[key])
            s_r = steps_to_reach(np.array(r["step"]), v, target)
            charge = 0.0 if ARM_SPECS[arm][0] == "uniform" else proxy["flops"]
            rows.append({"arm": arm if series == "raw" else f"{arm}+avg", "seed": seed, "target_loss": target,
                         "steps_uniform": s_u, "steps_arm": s_r, "speedup": 1 - s_r / s_u,
                         "speedup_with_proxy_cost": 1 - (s_r * flops_per_step + charge) / (s_u * flops_per_step),
                         "final_val_delta": float(v[-1] - uv[-1]),
                         "final_check_delta": float(check[(arm, seed)][series] - check[(BASELINE, seed)]["raw"])
                         if check.get((arm, seed), {}).get(series) is not None else float("nan")})
    summary = {}
    for arm in dict.fromkeys(r["arm"] for r in rows):
        mine = [r for r in rows if r["arm"] == arm]
        s = {k: spread([r[k] for r in mine]) for k in ("speedup", "speedup_with_proxy_cost", "final_val_delta",
                                                              "final_check_delta")}
        s["verdict"] = verdict(s["speedup"]) if arm != BASELINE else "baseline"
        s["verdict_with_proxy_cost"] = verdict(s["speedup_with_proxy_cost"]) if arm != BASELINE else "baseline"
        summary[arm] = s
    checks = {"proxy_censored_share": proxy["censored_share"],
              "pool_repetition": {a: metas[(a, args.seeds[0])]["pool_repetition"] for a in args.arms
                                  if ARM_SPECS[a][0] != "uniform"}}
    print_summary(args, summary, proxy, checks, base_flops)
    from tokenclock.artifacts import write_json, write_parquet

    write_parquet(out / "results.parquet", {k: [r[k] for r in rows] for k in rows[0]})
    write_json(out / "results.json", {
        "args": vars(args), "protocol": {"baseline": BASELINE, "target": "uniform cosine final val loss",
                                         "no_gain_within_sd": 2, "arm_specs": {a: ARM_SPECS[a] for a in args.arms}},
        "proxy": proxy, "checks": checks, "new_params": new_params, "new_run_flops": base_flops,
        "summary": summary, "rows": rows, "seconds": time.time() - t_all,
        "curves": {f"{a}|{s}": {"step": r["step"], "val_loss": r["val_loss"], "val_loss_avg": r.get("val_loss_avg")}
                   for (a, s), r in runs.items()},
        "run_seconds": {f"{a}|{s}": r["seconds"] for (a, s), r in runs.items()}})
    print(f"report: {reshape_report(out)}")
    print(f"total {time.time() - t_all:.0f} s; results in {out}/results.json and results.parquet")
    return 0


def _cell(s: dict) -> str:
    if s["mean"] is None:
        return f"{'never':>20}"
    sd = s["sd"] if s["sd"] is not None else float("nan")
    return f"{s['mean']:+8.1%} +-{sd:6.1%}" + (f" n/r{s['not_reached']}" if s["not_reached"] else "      ")


def print_summary(args, summary: dict, proxy: dict, checks: dict, base_flops: float) -> None:
    from reshape_report import repetition_check

    print(f"\nproxy: {proxy['params']:,} params x {proxy['train_tokens']:,} train tokens x6 + "
          f"{proxy['pool_trace_tokens']:,} traced tokens x2 = {proxy['flops']:.3g} FLOPs, "
          f"{proxy['share_of_one_run']:.1%} of one run ({base_flops:.3g}); seconds: train {proxy['train_seconds']:.0f}, "
          f"pool trace {proxy['pool_trace_seconds'] or 0:.0f}, pool fit {proxy['pool_fit_seconds']:.0f}")
    cs = checks["proxy_censored_share"]
    print(f"proxy check: {cs:.1%} of its learning events censored at its last checkpoint"
          + (" (over a third: the proxy had not finished learning; train it longer)" if cs > 1 / 3 else ""))
    for arm, rep in checks["pool_repetition"].items():
        seen, flag = repetition_check(rep)
        print(f"pool check {arm}: a drawn pool window is seen {rep['mean_draws']:.2f} times on average (max "
              f"{rep['max_draws']}); the uniform order (random windows) sees a token {rep['uniform_draws_per_token']:.2f} times on average, "
              f"{seen:.2f} times among the tokens it sees" + (" -> REPETITION: raise --pool-size" if flag else ""))
    print(f"\nspeed-up = 1 - steps_arm(L*) / steps_uniform(L*), L* = uniform (cosine) final val loss per seed; "
          f"mean +- SD over seeds {args.seeds}; n/r = seeds that never reached L*; a mean within 2 SD = no gain")
    print(f"dL final: the final validation loss minus uniform's on each seed's {args.val_seqs} windows; "
          f"dL check: the same on {args.check_seqs} windows shared by every seed")
    print(f"{'arm':<26}{'speed-up':>20}{'verdict':>9}{'incl. proxy cost':>22}{'verdict':>9}{'dL final':>20}"
          f"{'dL check':>20}")
    for arm, s in summary.items():
        print(f"{arm:<26}{_cell(s['speedup'])}{s['verdict']:>9}{_cell(s['speedup_with_proxy_cost'])}"
              f"{s['verdict_with_proxy_cost']:>9}{_nats(s['final_val_delta'])}{_nats(s['final_check_delta'])}")


def _nats(d: dict) -> str:
    return f"{'':>20}" if d["mean"] is None else f"{d['mean']:+12.4f} +-{d['sd'] or 0:.4f}"


if __name__ == "__main__":
    raise SystemExit(main())
