"""Benchmark of the batched fitter against per-trajectory scipy.optimize.curve_fit.

Generates N seeded trajectories (K = 64 log-spaced checkpoints) from a realistic mixture, fits all
of them with tokenclock and a random subsample with curve_fit (4-parameter sigmoid, careful initial
guess, the same bounds), and prints speed, SSE ratios, parameter recovery, class accuracy and
peak RSS. A benchmark, not a test:

    python benchmarks/fit_bench.py --n 200000 --max-events 1
    python benchmarks/fit_bench.py --n 4000000 --memmap /tmp/loss.npy
"""
from __future__ import annotations

import argparse
import resource
import time
import warnings

import numpy as np

from tokenclock.curves import initial_guess, mu_bounds, sigmoid1, width_bounds
from tokenclock.stages.fit.config import FitConfig
from tokenclock.stages.fit.fitter import fit_matrix

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


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=100_000, help="trajectories to fit")
    ap.add_argument("--max-events", type=int, default=2)
    ap.add_argument("--scipy-n", type=int, default=500, help="subsample fitted with scipy")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (0: torch default)")
    ap.add_argument("--chunk", type=int, default=None, help="chunk_tokens (default: FitConfig's)")
    ap.add_argument("--workers", type=int, default=0, help="fit worker processes (0: auto, 1: none)")
    ap.add_argument("--memmap", metavar="PATH", default=None,
                    help="write a (K, N) .npy here and fit from a memmap of it")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    u = axis()
    rng = np.random.default_rng(args.seed)
    t = truth(args.n, u, rng)
    kw = {"chunk_tokens": args.chunk} if args.chunk else {}
    cfg = FitConfig(max_events=args.max_events, device=args.device, threads=args.threads,
                    workers=args.workers, **kw)
    print(f"N={args.n} K={len(u)} max_events={args.max_events} device={args.device} "
          f"threads={args.threads} workers={args.workers or 'auto'} chunk={cfg.chunk_tokens}")
    if args.memmap:
        write_memmap(args.memmap, t, u, args.seed)
        from tokenclock.artifacts import read_npy
        loss_kn = read_npy(args.memmap, mmap=True)
    else:
        loss_kn = render(t, slice(None), u, np.random.default_rng([args.seed, 0])).T
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    fit_matrix(np.ascontiguousarray(loss_kn[:, :256]), u, cfg, progress=False)  # warm-up
    t0 = time.perf_counter()
    res = fit_matrix(loss_kn, u, cfg, progress=False)
    sec = time.perf_counter() - t0
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    tc_rate = args.n / sec
    print(f"tokenclock: {sec:.2f} s, {tc_rate:,.0f} trajectories/s; peak RSS {rss:,.0f} MB "
          f"(before fit {rss0:,.0f} MB; this process only)")

    sub = np.sort(np.random.default_rng(args.seed + 1).choice(args.n, min(args.scipy_n, args.n),
                                                               replace=False))
    Ysub = np.asarray(loss_kn[:, sub]).T
    t0 = time.perf_counter()
    sse_sp, p_sp, fails = scipy_fit(u, Ysub, cfg)
    sp_sec = time.perf_counter() - t0
    sp_rate = len(sub) / sp_sec
    print(f"scipy curve_fit: {len(sub)} trajectories in {sp_sec:.2f} s, {sp_rate:,.1f} "
          f"trajectories/s ({fails} failures)")
    print(f"speed-up: {tc_rate / sp_rate:,.0f}x")
    ratio = res.tokens["sse_sigmoid1"][sub] / np.maximum(sse_sp, 1e-12)
    print(f"SSE ratio tokenclock sigmoid1 / scipy (same trajectories): median "
          f"{np.median(ratio):.4f}, 95th pct {np.percentile(ratio, 95):.4f}, max {ratio.max():.3f}, "
          f"share > 1.01: {(ratio > 1.01).mean():.3f}")
    ratio_m = res.tokens["sse"][sub] / np.maximum(sse_sp, 1e-12)
    print(f"SSE ratio chosen model / scipy sigmoid: median {np.median(ratio_m):.4f}, "
          f"95th pct {np.percentile(ratio_m, 95):.4f}")

    # recovery on the single-sigmoid subset: the chosen model's dominant event
    kind = t["kind"]
    ev_tok, ev_a, ev_mu = res.events["tok_idx"], res.events["a"], res.events["mu"]
    dom_a = np.zeros(args.n)
    dom_mu = np.full(args.n, np.nan)
    order = np.argsort(np.abs(ev_a), kind="stable")           # larger |a| written last
    dom_a[ev_tok[order]] = ev_a[order]
    dom_mu[ev_tok[order]] = ev_mu[order]
    s = kind == 0
    mu_err = np.abs(dom_mu[s] - t["mu1"][s])
    a_err = np.abs(dom_a[s] - t["a1"][s]) / t["a1"][s]
    print(f"recovery on {s.sum()} single-sigmoid trajectories: |mu err| median "
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
        print(f"  class accuracy {name:15s} -> {EXPECTED[name]:15s} {acc:.3f}   ({top})")
    print(f"class accuracy overall: {sum(accs):.3f}")
    print("summary:", {k: res.summary[k] for k in ("median_r2", "sigmoid_share", "events_per_token")})


if __name__ == "__main__":
    main()
