"""Benchmark of the batched fitter against per-trajectory scipy.optimize.curve_fit.

Generates N seeded trajectories (K = 64 log-spaced checkpoints) from a realistic mixture, fits all
of them with tokenclock and a random subsample with curve_fit (4-parameter sigmoid, careful initial
guess, the same bounds), and prints speed, SSE ratios, parameter recovery, class accuracy and
peak RSS, for each width-floor rule (fit.width_floor: the new `spacing` rule and the old `span`
rule, measured in the same run). Then sharp-step cases (one sigmoid per trajectory, as narrow as half
the local checkpoint spacing) are reported separately against scipy's best of an unbounded
Levenberg-Marquardt fit and a bounded trust-region fit. The physical bounds (fit.loss_floor,
fit.a_max_noise_sds) are measured against the fitter without them in the same run: a `bounds off`
row, and --ab N alternating timed pairs (bounded / unbounded, median ratio). A benchmark, not a
test:

    python benchmarks/fit_bench.py --n 200000 --max-events 1
    python benchmarks/fit_bench.py --n 4000000 --memmap /tmp/loss.npy
    python benchmarks/fit_bench.py --n 20000 --max-events 1 --w-min-spacing 0.05,0.1,0.25,0.5
    python benchmarks/fit_bench.py --n 50000 --sharp-n 10000 --scipy-n 300 --ab 5
"""
from __future__ import annotations

import argparse
import resource
import time
import warnings

import numpy as np
from _common import machine_header

from tokenclock.curves import initial_guess, local_spacing, mu_bounds, sigmoid1, width_bounds
from tokenclock.stages.fit.config import FitConfig
from tokenclock.stages.fit.fitter import fit_matrix
from tokenclock.stages.train.schedule import checkpoint_steps

KINDS = ("sigmoid", "flat", "linear", "two-step", "forgetting", "rise-then-fall")
SHARES = (0.45, 0.12, 0.08, 0.12, 0.08, 0.15)
# linear-in-ln x curves drift 0.9-3.7 nats with no step: a significant change no sigmoid
# explains, which fit.py calls `irregular` (flat means no significant change)
EXPECTED = {"sigmoid": "learned", "flat": "flat", "linear": "irregular", "two-step": "learned",
            "forgetting": "forgotten", "rise-then-fall": "rise-then-fall"}
LN_V = np.log(4096)


def axis(k: int = 64) -> np.ndarray:
    """u = ln step for k log-spaced checkpoints between step 8 and 20,000."""
    return np.log(np.geomspace(8, 20_000, k))


def series_axis(steps: int = 20_000, per_decade: int = 16) -> np.ndarray:
    """u = ln step of a real checkpoint series (train.checkpoint_steps without step 0): every
    integer at first, then 16 per decade, rounded (irregular gaps, 0.69 at the start, ~0.14 late)."""
    return np.log(np.asarray(checkpoint_steps(steps, per_decade)[1:], dtype=np.float64))


def truth(n: int, u: np.ndarray, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Known parameters of n trajectories: kind, b and up to two events (a, mu, w)."""
    lo, hi, span = u[0], u[-1], u[-1] - u[0]
    kind = rng.choice(len(KINDS), size=n, p=SHARES)
    t = {"kind": kind, "b": rng.uniform(1.0, 5.0, n), "slope": np.zeros(n)}
    for j in (1, 2):
        t[f"a{j}"] = np.zeros(n)
        t[f"mu{j}"] = rng.uniform(lo + 0.1 * span, hi - 0.1 * span, n)
        t[f"w{j}"] = rng.uniform(0.02, 0.12, n) * span  # stepwise: a few checkpoints wide
    sig = kind == 0
    t["a1"][sig] = rng.uniform(0.8, 1.0, sig.sum()) * (LN_V - t["b"][sig])
    flat = kind == 1
    t["b"][flat] = rng.uniform(1.0, 8.0, flat.sum())
    lin = kind == 2
    t["slope"][lin] = rng.uniform(0.1, 0.4, lin.sum())
    two = kind == 3
    m1 = rng.uniform(lo + 0.1 * span, lo + 0.45 * span, two.sum())
    t["mu1"][two], t["mu2"][two] = m1, m1 + rng.uniform(0.3, 0.5, two.sum()) * span
    drop = LN_V - t["b"][two]
    t["a1"][two] = drop * rng.uniform(0.35, 0.65, two.sum())
    t["a2"][two] = drop - t["a1"][two]
    forg = kind == 4
    t["b"][forg] = rng.uniform(3.0, 6.0, forg.sum())
    t["a1"][forg] = -rng.uniform(0.8, 2.5, forg.sum())
    rtf = kind == 5  # rare tokens: rise above ln V while unigram stats are learned, then fall
    m1 = rng.uniform(lo + 0.1 * span, lo + 0.35 * span, rtf.sum())
    t["mu1"][rtf], t["mu2"][rtf] = m1, m1 + rng.uniform(0.25, 0.5, rtf.sum()) * span
    t["b"][rtf] = rng.uniform(4.0, 7.0, rtf.sum())
    rise = rng.uniform(0.6, 1.5, rtf.sum())
    t["a1"][rtf] = -rise
    t["a2"][rtf] = LN_V + rise - t["b"][rtf]
    return t


def render(t: dict, sl: slice, u: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Noisy trajectories (n, K) for rows `sl` of the truth: heteroscedastic noise (larger at
    higher loss) and occasional upward spikes."""
    b = t["b"][sl, None]
    y = b + t["slope"][sl, None] * (u[-1] - u)
    for j in (1, 2):
        y = y + sigmoid1(u, 0.0, t[f"a{j}"][sl, None], t[f"mu{j}"][sl, None], t[f"w{j}"][sl, None])
    sd = 0.04 + 0.025 * y.clip(0, None)
    y = y + rng.normal(0.0, 1.0, y.shape) * sd
    spikes = rng.random(y.shape) < 0.01
    y = y + spikes * rng.uniform(1.0, 3.0, y.shape)
    return y.astype(np.float32)


def write_memmap(path: str, t: dict, u: np.ndarray, seed: int, chunk: int = 65536) -> None:
    """Write a (K, N) float32 .npy with plain file writes (page cache, not this process's RSS)."""
    K, N = len(u), len(t["b"])
    with open(path, "wb") as fh:
        np.lib.format.write_array_header_1_0(fh, {"descr": "<f4", "fortran_order": False,
                                                  "shape": (K, N)})
        start = fh.tell()
        fh.truncate(start + 4 * K * N)
        for i in range(0, N, chunk):
            block = render(t, slice(i, i + chunk), u, np.random.default_rng([seed, i])).T
            for k in range(K):
                fh.seek(start + 4 * (k * N + i))
                fh.write(np.ascontiguousarray(block[k]).tobytes())


def sharp_truth(n: int, u: np.ndarray, rng: np.random.Generator,
                r_min: float = 0.5) -> dict[str, np.ndarray]:
    """n single sigmoids (the `sigmoid` kind's drop) whose width is r x the local checkpoint
    spacing at mu, r log-uniform in [r_min, 2]: at r_min = 0.5, half of them sharper than the
    series resolves."""
    lo, hi, span = u[0], u[-1], u[-1] - u[0]
    t = {"kind": np.zeros(n, np.int64), "b": rng.uniform(1.0, 5.0, n), "slope": np.zeros(n)}
    t["mu1"] = rng.uniform(lo + 0.1 * span, hi - 0.1 * span, n)
    t["w_over_spacing"] = np.exp(rng.uniform(np.log(r_min), np.log(2.0), n))
    t["w1"] = t["w_over_spacing"] * local_spacing(u, t["mu1"])
    t["a1"] = rng.uniform(0.8, 1.0, n) * (LN_V - t["b"])
    t["a2"], t["mu2"], t["w2"] = np.zeros(n), t["mu1"], t["w1"]
    return t


def scipy_fit(u: np.ndarray, Y: np.ndarray, cfg: FitConfig) -> tuple[np.ndarray, np.ndarray, int]:
    """curve_fit per trajectory with initial_guess and the fitter's mu/w bounds: (sse, params, fails)."""
    from scipy.optimize import curve_fit

    mlo, mhi = mu_bounds(u, cfg.mu_margin)
    wlo, whi = width_bounds(u, cfg.w_min_frac, cfg.w_max_frac)
    lo, hi = [-np.inf, -np.inf, mlo, wlo], [np.inf, np.inf, mhi, whi]
    sse, params, fails = np.empty(len(Y)), np.empty((len(Y), 4)), 0
    for i, y in enumerate(Y.astype(np.float64)):
        p0 = np.clip(initial_guess(u, y), np.array(lo) + 1e-9, np.array(hi) - 1e-9)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                p, _ = curve_fit(sigmoid1, u, y, p0=p0, bounds=(lo, hi), maxfev=2000)
        except (RuntimeError, ValueError):
            p, fails = p0, fails + 1
        params[i] = p
        sse[i] = float(((y - sigmoid1(u, *p)) ** 2).sum())
    return sse, params, fails


def scipy_best(u: np.ndarray, Y: np.ndarray, cfg: FitConfig) -> dict:
    """scipy's best one-sigmoid fit per trajectory: the smaller SSE of an unbounded
    Levenberg-Marquardt curve_fit started at initial_guess with w = the local spacing at its mu
    (a good start for a sharp step), and a bounded trust-region fit (scipy_fit: mu bounds, w from
    a hundredth of the smallest spacing to the fitter's largest width). Seconds of each."""
    from scipy.optimize import curve_fit

    Y = Y.astype(np.float64)
    sse_lm, t0 = np.empty(len(Y)), time.perf_counter()
    for i, y in enumerate(Y):
        b, a, mu, _ = initial_guess(u, y)
        p0 = (b, a, mu, float(local_spacing(u, mu)))
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                p, _ = curve_fit(sigmoid1, u, y, p0=p0, method="lm", maxfev=4000)
        except (RuntimeError, ValueError):
            p = p0
        sse_lm[i] = float(((y - sigmoid1(u, *p)) ** 2).sum())
    sec_lm, t0 = time.perf_counter() - t0, time.perf_counter()
    wide = FitConfig(w_min_frac=0.01 * float(np.diff(u).min()) / float(u[-1] - u[0]),
                     w_max_frac=cfg.w_max_frac, mu_margin=cfg.mu_margin)
    sse_trf, _, fails = scipy_fit(u, Y, wide)
    sec_trf = time.perf_counter() - t0
    return {"sse": np.fmin(sse_lm, sse_trf), "sse_lm": sse_lm, "sse_trf": sse_trf,
            "sec_lm": sec_lm, "sec_trf": sec_trf, "fails": fails}


def rule_configs(args) -> list[tuple[str, FitConfig]]:
    """(label, FitConfig) for each spacing factor asked for, then the old `span` rule."""
    kw = {"chunk_tokens": args.chunk} if args.chunk else {}
    base = dict(max_events=args.max_events, device=args.device, threads=args.threads,
                workers=args.workers, **kw)
    factors = ([float(f) for f in args.w_min_spacing.split(",")] if args.w_min_spacing
               else [FitConfig().w_min_spacing])
    out = [(f"spacing x{f:g}", FitConfig(width_floor="spacing", w_min_spacing=f, **base))
           for f in factors]
    if not args.no_unbounded:  # the physical bounds off: the fitter as it was before them
        out.append((f"spacing x{factors[0]:g}, bounds off",
                    FitConfig(width_floor="spacing", w_min_spacing=factors[0], loss_floor=None,
                              a_max_noise_sds=float("inf"), **base)))
    return out + [("span (old rule)", FitConfig(width_floor="span", **base))]


def timed_fit(loss_kn, u: np.ndarray, cfg: FitConfig):
    """(FitResult, seconds) after a small warm-up fit (torch start-up, grid bases)."""
    fit_matrix(np.ascontiguousarray(loss_kn[:, :256]), u, cfg, progress=False)
    t0 = time.perf_counter()
    res = fit_matrix(loss_kn, u, cfg, progress=False)
    return res, time.perf_counter() - t0


def mixture_rows(label: str, cfg: FitConfig, loss_kn, u: np.ndarray, t: dict, sub: np.ndarray,
                 sp: tuple, args) -> None:
    """The original rows for one rule: speed, SSE ratios, recovery, class accuracy."""
    sse_sp, sp_rate, sp_sec, fails, _ = sp
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    res, sec = timed_fit(loss_kn, u, cfg)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    tc_rate = args.n / sec
    print(f"[{label}] tokenclock: {sec:.2f} s, {tc_rate:,.0f} trajectories/s; peak RSS {rss:,.0f} MB "
          f"(before fit {rss0:,.0f} MB; this process only, all fits so far)")
    print(f"[{label}] scipy curve_fit: {len(sub)} trajectories in {sp_sec:.2f} s, {sp_rate:,.1f} "
          f"trajectories/s ({fails} failures)")
    print(f"[{label}] speed-up: {tc_rate / sp_rate:,.0f}x")
    ratio = res.tokens["sse_sigmoid1"][sub] / np.maximum(sse_sp, 1e-12)
    print(f"[{label}] SSE ratio tokenclock sigmoid1 / scipy (same trajectories): median "
          f"{np.median(ratio):.4f}, 95th pct {np.percentile(ratio, 95):.4f}, max {ratio.max():.3f}, "
          f"share > 1.01: {(ratio > 1.01).mean():.3f}")
    phys = sp[4]
    if phys is not None and (~phys).any():
        rp = ratio[phys]
        print(f"[{label}] SSE ratio sigmoid1 / scipy where scipy's own fit is physical ({phys.sum()} of "
              f"{len(phys)}: b >= 0, curve >= 0 over the checkpoints): median {np.median(rp):.4f}, "
              f"95th pct {np.percentile(rp, 95):.4f}, max {rp.max():.3f}; where it is not: median "
              f"{np.median(ratio[~phys]):.4f}, max {ratio[~phys].max():.3f}")
    ratio_m = res.tokens["sse"][sub] / np.maximum(sse_sp, 1e-12)
    print(f"[{label}] SSE ratio chosen model / scipy sigmoid: median {np.median(ratio_m):.4f}, "
          f"95th pct {np.percentile(ratio_m, 95):.4f}")
    _physical_rows(label, res, loss_kn, u)
    _recovery_rows(label, res, t, args.n)
    s = res.summary
    print(f"[{label}] summary:", {k: s[k] for k in ("median_r2", "sigmoid_share", "events_per_token")},
          f"share of events at the width floor {s['width_floor']['share_at_floor']:.3f}, "
          f"unresolved {s['resolution']['unresolved_event_share']:.3f} of events, "
          f"{s['resolution']['unresolved_amplitude_share']:.3f} of |a|")


def ab_timing(loss_kn, u: np.ndarray, cfgs: list, repeats: int) -> None:
    """The physical bounds' cost: bounded and unbounded fits of the same data alternated
    `repeats` times (a shared machine drifts; alternating pairs cancel the drift), median ratio."""
    pair = [c for c in cfgs if c[0].startswith("spacing")][:1] + \
        [c for c in cfgs if c[0].endswith("bounds off")]
    if len(pair) < 2 or repeats < 1:
        return
    sec = {label: [] for label, _ in pair}
    for _ in range(repeats):
        for label, cfg in pair:
            sec[label].append(timed_fit(loss_kn, u, cfg)[1])
    (lb, b), (lu, ub) = ((k, np.array(v)) for k, v in sec.items())
    print(f"bounds A/B over {repeats} alternating pairs: [{lb}] median {np.median(b):.2f} s, "
          f"[{lu}] median {np.median(ub):.2f} s; time ratio bounded / unbounded: median "
          f"{np.median(b / ub):.3f} (min {np.min(b / ub):.3f}, max {np.max(b / ub):.3f})")


def _physical_rows(label: str, res, loss_kn, u: np.ndarray) -> None:
    """What the physical bounds are about: b < 0, |a| beyond the highest loss, censored events."""
    ev, tok = res.events, res.tokens
    top = np.asarray(loss_kn).max(0)                         # (N,) highest loss of each token
    cens = res.summary.get("censored") or {}
    outside = ((ev["mu"] < u[0]) | (ev["mu"] > u[-1])).mean()
    print(f"[{label}] physical: b < 0 on {(tok['b'] < 0).mean():.4f} of tokens; |a| > the token's "
          f"highest loss on {(np.abs(ev['a']) > top[ev['tok_idx']]).mean():.4f} of events; "
          f"midpoint outside the checkpoints {outside:.4f}; censored share "
          f"{cens.get('event_share', float('nan')):.4f} of events")


def _recovery_rows(label: str, res, t: dict, n: int) -> None:
    # recovery on the single-sigmoid subset: the chosen model's dominant event
    kind = t["kind"]
    ev_tok, ev_a, ev_mu = res.events["tok_idx"], res.events["a"], res.events["mu"]
    dom_a = np.zeros(n)
    dom_mu = np.full(n, np.nan)
    order = np.argsort(np.abs(ev_a), kind="stable")           # larger |a| written last
    dom_a[ev_tok[order]] = ev_a[order]
    dom_mu[ev_tok[order]] = ev_mu[order]
    s = kind == 0
    mu_err = np.abs(dom_mu[s] - t["mu1"][s])
    a_err = np.abs(dom_a[s] - t["a1"][s]) / t["a1"][s]
    print(f"[{label}] recovery on {s.sum()} single-sigmoid trajectories: |mu err| median "
          f"{np.nanmedian(mu_err):.3f} (90th pct {np.nanpercentile(mu_err, 90):.3f}) ln-steps; "
          f"|a err|/a median {np.nanmedian(a_err):.3f} (90th pct {np.nanpercentile(a_err, 90):.3f})")
    cls = res.tokens["class"]
    accs = []
    for k, name in enumerate(KINDS):
        m = kind == k
        acc = float((cls[m] == EXPECTED[name]).mean()) if m.any() else float("nan")
        accs.append(acc * m.mean())
        top = dict(zip(*np.unique(cls[m], return_counts=True)))
        top = ", ".join(f"{c} {v / m.sum():.2f}" for c, v in sorted(top.items(), key=lambda x: -x[1])[:3])
        print(f"[{label}]   class accuracy {name:15s} -> {EXPECTED[name]:15s} {acc:.3f}   ({top})")
    print(f"[{label}] class accuracy overall: {sum(accs):.3f}")


def sharp_rows(name: str, u: np.ndarray, cfgs: list, args) -> None:
    """Sharp-step cases along u: tokenclock (each rule) against scipy's best, reported apart."""
    n = args.sharp_n
    t = sharp_truth(n, u, np.random.default_rng([args.seed, 18]), args.sharp_min)
    Y = render(t, slice(None), u, np.random.default_rng([args.seed, 19]))       # (n, K)
    sub = np.sort(np.random.default_rng(args.seed + 2).choice(n, min(args.scipy_n, n), replace=False))
    best = scipy_best(u, Y[sub], cfgs[0][1])
    lm_rate, trf_rate = len(sub) / best["sec_lm"], len(sub) / best["sec_trf"]
    both_rate = len(sub) / (best["sec_lm"] + best["sec_trf"])
    true_res = t["w_over_spacing"] >= 1
    print(f"sharp [{name}: K={len(u)}, spacing {np.diff(u).min():.3f}-{np.diff(u).max():.3f}, "
          f"true w / spacing {args.sharp_min:g}-2, {true_res.mean():.2f} truly resolved]: "
          f"{n} trajectories, "
          f"scipy on {len(sub)}: LM {lm_rate:,.1f}/s, bounded TRF {trf_rate:,.1f}/s "
          f"({best['fails']} failures); scipy's best is the LM fit on "
          f"{(best['sse_lm'] <= best['sse_trf']).mean():.2f}")
    for label, cfg in cfgs:
        res, sec = timed_fit(np.ascontiguousarray(Y.T), u, cfg)
        rate = n / sec
        ratio = res.tokens["sse_sigmoid1"][sub] / np.maximum(best["sse"], 1e-12)
        # resolved flag of each token's dominant (largest |a|) event against the truth
        ev = res.events
        dom = np.zeros(n, bool)
        order = np.argsort(np.abs(ev["a"]), kind="stable")
        dom[ev["tok_idx"][order]] = ev["resolved"][order]
        has = np.isin(np.arange(n), ev["tok_idx"])
        agree = float((dom[has] == true_res[has]).mean())
        s = res.summary
        print(f"  [{label}] SSE ratio tokenclock sigmoid1 / scipy best: median {np.median(ratio):.5f}, "
              f"p95 {np.percentile(ratio, 95):.4f}, max {ratio.max():.3f}, share > 1.05: "
              f"{(ratio > 1.05).mean():.3f} (goal: median <= 1.0, p95 <= 1.05); "
              f"{rate:,.0f} trajectories/s, speed-up {rate / trf_rate:,.0f}x one bounded curve_fit, "
              f"{rate / both_rate:,.0f}x scipy's best (both fits)")
        print(f"  [{label}] events at the width floor {s['width_floor']['share_at_floor']:.3f}; "
              f"unresolved {s['resolution']['unresolved_event_share']:.3f} of events (truth: "
              f"{1 - true_res.mean():.3f} of tokens); `resolved` of the main event agrees with the "
              f"truth on {agree:.3f}")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=100_000, help="trajectories to fit")
    ap.add_argument("--max-events", type=int, default=2)
    ap.add_argument("--scipy-n", type=int, default=500, help="subsample fitted with scipy")
    ap.add_argument("--sharp-n", type=int, default=20_000,
                    help="sharp-step trajectories per axis (0: skip the sharp cases)")
    ap.add_argument("--sharp-min", type=float, default=0.5,
                    help="sharpest true width of the sharp cases, in local spacings")
    ap.add_argument("--w-min-spacing", default=None, metavar="F[,F...]",
                    help="spacing-rule factors to measure (default: FitConfig's); the span rule "
                         "is always measured too")
    ap.add_argument("--no-unbounded", action="store_true",
                    help="skip the row with the physical bounds off (fit.loss_floor null, "
                         "fit.a_max_noise_sds inf)")
    ap.add_argument("--ab", type=int, default=3, metavar="N",
                    help="time the bounded and the unbounded fit in N alternating pairs (0: skip)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (0: torch default)")
    ap.add_argument("--chunk", type=int, default=None, help="chunk_tokens (default: FitConfig's)")
    ap.add_argument("--workers", type=int, default=0, help="fit worker processes (0: auto, 1: none)")
    ap.add_argument("--memmap", metavar="PATH", default=None,
                    help="write a (K, N) .npy here and fit from a memmap of it")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    machine_header()

    u = axis()
    rng = np.random.default_rng(args.seed)
    t = truth(args.n, u, rng)
    cfgs = rule_configs(args)
    cfg = cfgs[0][1]
    print(f"N={args.n} K={len(u)} max_events={args.max_events} device={args.device} "
          f"threads={args.threads} workers={args.workers or 'auto'} chunk={cfg.chunk_tokens} "
          f"rules: {', '.join(label for label, _ in cfgs)}")
    if args.memmap:
        write_memmap(args.memmap, t, u, args.seed)
        from tokenclock.artifacts import read_npy
        loss_kn = read_npy(args.memmap, mmap=True)
    else:
        loss_kn = render(t, slice(None), u, np.random.default_rng([args.seed, 0])).T
    sub = np.sort(np.random.default_rng(args.seed + 1).choice(args.n, min(args.scipy_n, args.n),
                                                               replace=False))
    Ysub = np.asarray(loss_kn[:, sub]).T
    t0 = time.perf_counter()
    sse_sp, p_sp, fails = scipy_fit(u, Ysub, FitConfig(width_floor="span"))  # the old bounds
    sp_sec = time.perf_counter() - t0
    # scipy's fits that a loss could have: b >= 0 and the curve >= 0 at every checkpoint
    phys = (p_sp[:, 0] >= 0) & (sigmoid1(u[None, :], *(p_sp[:, i, None] for i in range(4))).min(1) >= 0)
    for label, c in cfgs:
        mixture_rows(label, c, loss_kn, u, t, sub,
                     (sse_sp, len(sub) / sp_sec, sp_sec, fails, phys), args)
    if not args.no_unbounded:
        ab_timing(loss_kn, u, cfgs, args.ab)
    if args.sharp_n:
        for name, uu in (("even log axis", u), ("checkpoint series", series_axis())):
            sharp_rows(name, uu, cfgs, args)


if __name__ == "__main__":
    main()
