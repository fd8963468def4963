"""The fit stage: reads RUN/trace/loss.npy (K, N) and RUN/trace/axis.parquet, fits every token's
loss trajectory with 0, 1 or 2 sigmoid events, and writes RUN/fit/{events,tokens}.parquet and
summary.json (extra clocks such as cum_lr go to RUN/fit/<axis>/).

Models per token (chosen by BIC = K ln(SSE/K) + p ln K): `flat` (b), `linear` (b + c (u - u_max);
the `c` column, 0 for other models),
`sigmoid1` (b + a s((mu - u)/w)), `sigmoid2` (two events). `bic_gap` = min BIC of flat/linear
minus min BIC of the sigmoid models: > 0 means a sigmoid is preferred, by that many BIC units.

Classes, decided in this order (thresholds are FitConfig fields; span = u_max - u_min):
1. `irregular`: parameters not finite, or r2 of the chosen model < min_r2 while the trajectory's
   spread (90th minus 10th nearest-rank percentile of its losses) is >= irregular_spread_nats.
2. `flat`: the chosen model is flat, or linear with a total change |c| * span < min_drop_nats,
   or the events' total |a| < min_drop_nats. A linear model that changes by more than that
   (a steady drift in ln x that no sigmoid explains) is `irregular`.
3. `rise-then-fall`: two events, an earlier rise (a < 0) and a later drop (a > 0), both with
   |a| >= min_drop_nats, and the drop's midpoint <= u_max - late_margin * span.
4. Otherwise the dominant event (largest |a| with |a| >= min_drop_nats) decides:
   `early` if its mu < u_min + early_margin * span, `late` if mu > u_max - late_margin * span
   (midpoint outside, or within the margin of, the observed range: censored, as half the change
   is unobserved and mu trades off against a), else `learned` if the net change
   sum(a) > 0 and `forgotten` if sum(a) < 0 (a net rise).
A two-step curve (two drops) is `learned` with n_events = 2.
"""
from __future__ import annotations

import math
import os
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from tokenclock.curves import mu_bounds, width_bounds
from tokenclock.errors import ConfigError, DataError, RunDirError
from tokenclock.rundir import RunDir, run_lock, update_stage
from tokenclock.artifacts import read_npy, read_parquet, write_json, write_parquet
from tokenclock.stages.fit import levenberg_marquardt as lm

CLASSES = ("learned", "forgotten", "rise-then-fall", "flat", "early", "late", "irregular")
MODELS = ("flat", "linear", "sigmoid1", "sigmoid2")
_N_PARAMS = (1, 2, 4, 7)


@dataclass
class FitConfig:
    """Settings of the fit stage (section `fit` of a config file)."""

    axis: str = "step"
    """Column of trace/axis.parquet used as x (u = ln x); results go to RUN/fit/."""
    extra_axes: list[str] = field(default_factory=lambda: ["cum_lr"])
    """Other clocks also fitted, into RUN/fit/<axis>/; columns missing from axis.parquet are
    skipped with a warning."""
    max_events: int = 2
    """Most sigmoid events per token: 0 (flat/linear only), 1 or 2."""
    min_drop_nats: float = 0.5
    """Smallest |a| (nats) that counts as a learning event / a rise; smaller changes are `flat`."""
    min_r2: float = 0.5
    """Below this r2 a trajectory with a large spread is `irregular`."""
    irregular_spread_nats: float = 1.0
    """Spread (90th - 10th percentile of losses) above which an unexplained trajectory is
    `irregular` rather than noisy-`flat`."""
    early_margin: float = 0.03
    """`early` when the dominant midpoint mu < u_min + early_margin * span (0: strictly outside
    the observed range; the default also counts midpoints within ~1 checkpoint of the edge)."""
    late_margin: float = 0.03
    """`late` when mu > u_max - late_margin * span."""
    mu_margin: float = 0.25
    """Midpoints may lie this fraction of the span beyond the observed u range (then censored)."""
    w_min_frac: float = 0.02
    """Smallest width, as a fraction of the span of u (sharper steps are not resolvable)."""
    w_max_frac: float = 0.5
    """Largest width, as a fraction of the span of u."""
    grid_mu: int = 32
    """Grid cells along mu for the initial guess."""
    grid_w: int = 6
    """Grid cells along w (log-spaced) for the initial guess."""
    pair_grid_mu: int = 16
    """Coarse grid along mu for the joint two-event starting point (all pairs of cells)."""
    pair_grid_w: int = 4
    """Coarse grid along w for the joint two-event starting point."""
    lm_iters: int = 20
    """Levenberg-Marquardt iterations per model (stops earlier when no token improves)."""
    uncertainty: bool = False
    """Also compute the standard error of each mu from the LM Jacobian (events column mu_se)."""
    chunk_tokens: int = 32768
    """Trajectories fitted at once; bounds memory (about 4 KB per trajectory at K = 64)."""
    device: str = "cpu"
    """torch device: cpu, cuda, cuda:1, ..."""
    dtype: str = "float32"
    """Compute precision on standardized trajectories: float32 (fast) or float64."""
    threads: int = 1
    """torch CPU threads for the fit (0: torch's default). 1 is the robust default: the fit is
    many small elementwise ops, and OpenMP threads collapse (10x slower) when a core is shared."""
    workers: int = 0
    """Processes that fit chunks in parallel on the CPU, each single-threaded (0: one per core
    when there are at least 8 chunks, else 1; 1: in this process). Results do not depend on it."""

    def __post_init__(self) -> None:
        if not self.axis or not isinstance(self.axis, str):
            raise ConfigError("fit.axis must be a column name of trace/axis.parquet", "e.g. step")
        self.extra_axes = [a for a in (self.extra_axes or []) if a != self.axis]
        if self.max_events not in (0, 1, 2):
            raise ConfigError(f"fit.max_events must be 0, 1 or 2, got {self.max_events}")
        for name in ("min_drop_nats", "irregular_spread_nats", "mu_margin", "early_margin",
                     "late_margin"):
            if not getattr(self, name) >= 0:
                raise ConfigError(f"fit.{name} must be >= 0, got {getattr(self, name)}")
        if not 0 <= self.min_r2 <= 1:
            raise ConfigError(f"fit.min_r2 must be in [0, 1], got {self.min_r2}")
        if not 0 < self.w_min_frac < self.w_max_frac:
            raise ConfigError(f"fit needs 0 < w_min_frac < w_max_frac, got {self.w_min_frac}, "
                              f"{self.w_max_frac}")
        if self.grid_mu < 2 or self.grid_w < 1 or self.pair_grid_mu < 2 or self.pair_grid_w < 1:
            raise ConfigError("fit.grid_mu, fit.pair_grid_mu must be >= 2 and fit.grid_w, "
                              "fit.pair_grid_w >= 1")
        if self.lm_iters < 0 or self.chunk_tokens < 1 or self.threads < 0 or self.workers < 0:
            raise ConfigError("fit.lm_iters, fit.threads must be >= 0 and fit.chunk_tokens >= 1")
        if self.dtype not in ("float32", "float64"):
            raise ConfigError(f"fit.dtype must be float32 or float64, got {self.dtype!r}")
        if not (self.device == "cpu" or self.device.startswith("cuda") or self.device == "mps"):
            raise ConfigError(f"fit.device {self.device!r} is not a torch device",
                              "use cpu, cuda or cuda:N")


@dataclass
class FitResult:
    """Per-token and per-event columns plus a summary; `write(folder)` saves the three files."""

    tokens: dict[str, np.ndarray]
    events: dict[str, np.ndarray]
    summary: dict

    def write(self, folder: str | Path) -> None:
        folder = Path(folder)
        meta = {"axis": self.summary.get("axis")}
        write_parquet(folder / "events.parquet", self.events, metadata=meta)
        write_parquet(folder / "tokens.parquet", self.tokens, metadata=meta)
        write_json(folder / "summary.json", self.summary)


# ----------------------------------------------------------------------------- input checks


def _check_axis(u: np.ndarray, n_ckpt: int) -> np.ndarray:
    u = np.asarray(u, dtype=np.float64)
    if u.ndim != 1 or len(u) != n_ckpt:
        raise DataError(f"axis has {u.size} values but the loss matrix has {n_ckpt} checkpoints",
                        "pass one u = ln x per checkpoint")
    if not np.isfinite(u).all():
        raise DataError(f"axis has {int((~np.isfinite(u)).sum())} non-finite values",
                        "drop checkpoints with x <= 0 before taking ln x")
    if len(u) < 4:
        raise DataError(f"only {len(u)} usable checkpoints; a sigmoid fit needs at least 4",
                        "trace more checkpoints (log-spaced, 30-60 is typical)")
    if not (np.diff(u) > 0).all():
        k = int(np.nonzero(np.diff(u) <= 0)[0][0])
        raise DataError(f"axis is not strictly increasing (u[{k}] = {u[k]:.6g} >= "
                        f"u[{k + 1}] = {u[k + 1]:.6g})", "sort checkpoints and drop duplicates")
    return u


def _nonfinite_error(loss_kn, chunk: int, keep: np.ndarray | None = None) -> DataError:
    """Count non-finite losses over the whole (K, N) matrix, chunk by chunk, and name a few."""
    n_bad, where = 0, []
    for i in range(0, loss_kn.shape[1], chunk):
        block = np.asarray(loss_kn[:, i:i + chunk])
        bad = ~np.isfinite(block)
        if keep is not None:
            bad &= keep[:, None]
        n_bad += int(bad.sum())
        if len(where) < 3:
            ks, ns = np.nonzero(bad)
            where += [f"(checkpoint {k}, token {i + n})" for k, n in zip(ks[:3], ns[:3])]
    return DataError(f"loss matrix has {n_bad} NaN/inf values, e.g. at {', '.join(where[:3])}",
                     "re-run `tokenclock trace` for those checkpoints, or drop the bad rows/columns")


# ----------------------------------------------------------------------------- the engine


def _fit_block(Y: np.ndarray, u: np.ndarray, cfg: FitConfig, ctx: dict) -> dict[str, np.ndarray]:
    """Fit trajectories Y (C, K) (finite) along u (K,): every model, BIC choice, classes."""
    import torch


    dev, dt = torch.device(cfg.device), getattr(torch, cfg.dtype)
    C, K = Y.shape
    Yd = torch.as_tensor(np.ascontiguousarray(Y), device=dev).to(torch.float64)
    m = Yd.mean(1)
    sd = Yd.std(1, unbiased=False)
    sd = torch.where(sd > 0, sd, torch.ones_like(sd))
    ys = ((Yd - m[:, None]) / sd[:, None]).to(dt)          # standardized, (C, K)
    ut = torch.as_tensor(u, dtype=dt, device=dev)
    if "gb" not in ctx:
        ctx["gb"] = lm.GridBasis(ut, cfg.grid_mu, cfg.grid_w, cfg.mu_margin, cfg.w_min_frac,
                                 cfg.w_max_frac)
        lo, hi = ctx["mu_bounds"]
        ctx["bounds"] = lm.Bounds(lo, hi, *ctx["w_bounds"])
    gb, bounds = ctx["gb"], ctx["bounds"]

    sst = (ys * ys).sum(1)                                   # = K unless the row is constant
    uc = ut - ut.mean()
    sse = {"flat": sst, "linear": (sst - (ys @ uc) ** 2 / (uc @ uc)).clamp_min(0)}
    slope = (ys @ uc) / (uc @ uc)
    params, jtj = {}, {}
    if cfg.max_events >= 1:
        p1 = lm.grid_one(ys, gb)
        params["sigmoid1"], sse["sigmoid1"], jtj["sigmoid1"] = lm.levenberg_marquardt(
            ys, ut, p1, bounds, cfg.lm_iters)
    if cfg.max_events >= 2 and K > 8:
        # two starting points: the second event fitted on the residual of the first, and the
        # best pair of a coarse grid (finds two-step curves the residual route misses)
        p2 = lm.grid_two(ys, ut, params["sigmoid1"], gb)
        f2, _ = lm.evaluate(p2, ut, jac=False)
        if "pb" not in ctx:
            ctx["pb"] = lm.PairBasis(lm.GridBasis(ut, cfg.pair_grid_mu, cfg.pair_grid_w,
                                                  cfg.mu_margin, cfg.w_min_frac, cfg.w_max_frac))
        pp, sse_pp = lm.grid_pair(ys, ctx["pb"])
        use_pair = sse_pp < ((ys - f2) ** 2).sum(1)
        p2 = torch.where(use_pair[:, None], pp, p2)
        p2, s2, j2 = lm.levenberg_marquardt(ys, ut, p2, bounds, cfg.lm_iters)
        params["sigmoid2"], sse["sigmoid2"], jtj["sigmoid2"] = p2, s2, j2

    # BIC in standardized units (differences are scale-free); a floor keeps ln finite.
    names = [n for n in MODELS if n in sse]
    S = torch.stack([sse[n].double() for n in names], 1)     # (C, M)
    pen = torch.tensor([_N_PARAMS[MODELS.index(n)] for n in names], dtype=torch.float64,
                       device=dev)
    bic = K * torch.log(S.clamp_min(0) / K + 1e-9) + pen * math.log(K)
    best = bic.argmin(1)
    n_sig = sum(n.startswith("sigmoid") for n in names)
    if n_sig:
        gap = bic[:, :2].min(1).values - bic[:, 2:].min(1).values
    else:
        gap = torch.full((C,), float("nan"), dtype=torch.float64, device=dev)

    out = {"sse_std": S.gather(1, best[:, None])[:, 0]}
    # Per-token event slots (C, 2) in nats; unused slots NaN.
    ev = {k: torch.full((C, 2), float("nan"), dtype=torch.float64, device=dev)
          for k in ("a", "mu", "width", "mu_se")}
    b = m.clone()                                            # flat: the mean
    b = torch.where(best == 1, m + sd * (slope.double() * (ut[-1] - ut.mean()).double()), b)
    n_events = torch.zeros(C, dtype=torch.int64, device=dev)
    for mi, name in enumerate(names):
        if not name.startswith("sigmoid"):
            continue
        sel = best == mi
        p = params[name].double()
        ne = 1 if name == "sigmoid1" else 2
        if ne == 2:  # order the two events by midpoint
            swap = p[:, 5] < p[:, 2]
            p = torch.where(swap[:, None], p[:, [0, 4, 5, 6, 1, 2, 3]], p)
        if cfg.uncertainty:
            se = lm.parameter_se(jtj[name].double(), sse[name].double(), K)
            if ne == 2:
                se = torch.where(swap[:, None], se[:, [0, 4, 5, 6, 1, 2, 3]], se)
        b = torch.where(sel, m + sd * p[:, 0], b)
        n_events = torch.where(sel, torch.full_like(n_events, ne), n_events)
        for j in range(ne):
            ev["a"][:, j] = torch.where(sel, sd * p[:, 1 + 3 * j], ev["a"][:, j])
            ev["mu"][:, j] = torch.where(sel, p[:, 2 + 3 * j], ev["mu"][:, j])
            ev["width"][:, j] = torch.where(sel, p[:, 3 + 3 * j], ev["width"][:, j])
            if cfg.uncertainty:
                ev["mu_se"][:, j] = torch.where(sel, se[:, 2 + 3 * j], ev["mu_se"][:, j])
    sd2 = sd * sd
    raw_sst = sst.double()
    r2 = torch.where(raw_sst > 0, 1 - out["sse_std"] / raw_sst.clamp_min(1e-30),
                     torch.ones_like(raw_sst))
    srt = Yd.sort(1).values                                  # spread: nearest-rank percentiles
    spread = srt[:, round(0.9 * (K - 1))] - srt[:, round(0.1 * (K - 1))]
    model_codes = torch.tensor([MODELS.index(n) for n in names], device=dev)
    # linear model: l(u) = b + c (u - u_max), b the final level; c in nats per unit of ln x
    c = torch.where(best == names.index("linear"), sd * slope.double(), torch.zeros_like(b))
    res = {"b": b, "c": c, "n_events": n_events, "r2": r2, "sse": out["sse_std"] * sd2,
           "model": model_codes[best], "bic_gap": gap, "spread": spread}
    for name in ("sigmoid1", "sigmoid2"):
        res[f"sse_{name}"] = (sse[name].double() * sd2 if name in sse
                              else torch.full((C,), float("nan"), dtype=torch.float64, device=dev))
    res = {k: v.cpu().numpy() for k, v in res.items()}
    res.update({f"ev_{k}": v.cpu().numpy() for k, v in ev.items()})
    res["class"] = _classify(res, ctx["u_min"], ctx["u_max"], cfg)
    return res


def _classify(r: dict[str, np.ndarray], u_min: float, u_max: float, cfg: FitConfig) -> np.ndarray:
    """Class codes (index into CLASSES) by the rules in the module docstring; vectorized."""
    span = u_max - u_min
    a = np.nan_to_num(r["ev_a"], nan=0.0)                    # (C, 2)
    mu = r["ev_mu"]
    n = r["n_events"]
    absa = np.abs(a)
    total = absa.sum(1)
    dom = absa.argmax(1)
    mu_dom = np.take_along_axis(mu, dom[:, None], 1)[:, 0]
    late_at = u_max - cfg.late_margin * span
    early_at = u_min + cfg.early_margin * span
    cls = np.full(len(n), CLASSES.index("learned"), dtype=np.int8)
    cls[a.sum(1) < 0] = CLASSES.index("forgotten")
    cls[mu_dom < early_at] = CLASSES.index("early")
    cls[mu_dom > late_at] = CLASSES.index("late")
    rtf = ((n == 2) & (a[:, 0] <= -cfg.min_drop_nats) & (a[:, 1] >= cfg.min_drop_nats)
           & (mu[:, 1] <= late_at))
    cls[rtf] = CLASSES.index("rise-then-fall")
    flat = (n == 0) | (total < cfg.min_drop_nats)
    cls[flat] = CLASSES.index("flat")
    steady = np.abs(np.nan_to_num(r["c"])) * span >= cfg.min_drop_nats  # linear in ln x, no step
    cls[steady] = CLASSES.index("irregular")
    finite = np.isfinite(r["b"]) & np.isfinite(r["sse"]) & np.isfinite(r["r2"])
    finite &= np.where(n[:, None] > np.arange(2)[None, :],
                       np.isfinite(r["ev_a"]) & np.isfinite(r["ev_mu"]) & np.isfinite(r["ev_width"]),
                       True).all(1)
    irregular = ~finite | ((r["r2"] < cfg.min_r2) & (r["spread"] >= cfg.irregular_spread_nats))
    cls[irregular] = CLASSES.index("irregular")
    return cls


# ----------------------------------------------------------------------------- public API


def fit_matrix(loss_kn, u, cfg: FitConfig | None = None, progress: bool = True,
               axis: str | None = None) -> FitResult:
    """Fit every column of a (K, N) loss matrix (array or memmap) along u (K,), streaming
    cfg.chunk_tokens columns at a time so memory stays bounded. tok_idx = column index."""
    import torch
    from tqdm.auto import tqdm

    cfg = cfg or FitConfig()
    if getattr(loss_kn, "ndim", 0) != 2:
        raise DataError(f"loss matrix must be 2-D (K checkpoints, N tokens), got shape "
                        f"{getattr(loss_kn, 'shape', None)}", "pass trace/loss.npy as (K, N)")
    K, N = loss_kn.shape
    u = _check_axis(u, K)
    t0 = time.perf_counter()
    old_threads = torch.get_num_threads()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    ctx = {"u_min": float(u[0]), "u_max": float(u[-1])}
    ctx["mu_bounds"] = mu_bounds(u, cfg.mu_margin)
    ctx["w_bounds"] = width_bounds(u, cfg.w_min_frac, cfg.w_max_frac)
    cols = ("b", "c", "n_events", "r2", "sse", "class", "model", "bic_gap", "sse_sigmoid1",
            "sse_sigmoid2", "spread")
    tok = {c: np.empty(N, dtype=np.int8 if c in ("class", "model", "n_events") else np.float64)
           for c in cols}
    evs = {c: np.empty((N, 2), dtype=np.float64) for c in ("a", "mu", "width", "mu_se")}
    chunk = cfg.chunk_tokens
    starts = list(range(0, N, chunk))

    def blocks():
        for i in starts:
            Y = np.asarray(loss_kn[:, i:i + chunk], dtype=np.float32).T   # (C, K)
            if not np.isfinite(Y).all():
                raise _nonfinite_error(loss_kn, chunk)
            _release_pages(loss_kn)
            yield Y

    workers = _n_workers(cfg, len(starts))
    try:
        with tqdm(total=N, unit="traj", unit_scale=True, disable=not progress,
                  desc=f"fit {axis or cfg.axis}", smoothing=0.1) as bar:
            results = (_fit_parallel(blocks(), u, cfg, workers) if workers > 1
                       else (_fit_block(Y, u, cfg, ctx) for Y in blocks()))
            for i, r in zip(starts, results):
                for c in cols:
                    tok[c][i:i + chunk] = r[c]
                for c in evs:
                    evs[c][i:i + chunk] = r[f"ev_{c}"]
                bar.update(len(r["b"]))
    finally:
        torch.set_num_threads(old_threads)
    seconds = time.perf_counter() - t0
    return _assemble(tok, evs, u, cfg, axis or cfg.axis, seconds)


def _n_workers(cfg: FitConfig, n_chunks: int) -> int:
    if cfg.device != "cpu":
        return 1
    if cfg.workers:
        return min(cfg.workers, n_chunks)
    # a spawned worker costs ~2 s to start (it imports torch): worth it from ~8 chunks on
    return min(os.cpu_count() or 1, n_chunks) if n_chunks >= 8 else 1


_WORKER_CTX: dict = {}


def _worker_block(Y: np.ndarray, u: np.ndarray, cfg: FitConfig) -> dict:
    """One chunk in a worker process (single-threaded torch; grid bases cached per process)."""
    import torch


    torch.set_num_threads(1)
    key = (u.tobytes(), repr(cfg))
    if _WORKER_CTX.get("key") != key:
        _WORKER_CTX.clear()
        _WORKER_CTX.update(key=key, u_min=float(u[0]), u_max=float(u[-1]),
                           mu_bounds=mu_bounds(u, cfg.mu_margin),
                           w_bounds=width_bounds(u, cfg.w_min_frac, cfg.w_max_frac))
    return _fit_block(Y, u, cfg, _WORKER_CTX)


def _fit_parallel(blocks, u: np.ndarray, cfg: FitConfig, workers: int):
    """Yield chunk results in order from a pool of spawned processes, at most 2 chunks in flight
    per worker so memory stays bounded."""
    import multiprocessing as mp
    from collections import deque
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn")) as pool:
        pending: deque = deque()
        for Y in blocks:
            pending.append(pool.submit(_worker_block, Y, u, cfg))
            if len(pending) >= 2 * workers:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


def fit_trajectories(Y: np.ndarray, u: np.ndarray, cfg: FitConfig | None = None,
                     progress: bool = False) -> FitResult:
    """Fit in-memory trajectories Y (N, K) along u (K,) (u = ln x, strictly increasing)."""
    Y = np.asarray(Y)
    if Y.ndim != 2:
        raise DataError(f"trajectories must be 2-D (N tokens, K checkpoints), got shape {Y.shape}",
                        "stack them as one row per token")
    return fit_matrix(Y.T, u, cfg, progress=progress)


def _release_pages(arr) -> None:
    """Drop the clean file pages a memmap has touched, so RSS stays bounded on huge matrices."""
    mm = getattr(arr, "_mmap", None)
    if mm is None:
        base = getattr(arr, "base", None)
        mm = getattr(base, "_mmap", None) if base is not None else None
    if mm is not None and hasattr(mm, "madvise"):
        import mmap
        try:
            mm.madvise(mmap.MADV_DONTNEED)
        except (OSError, ValueError, AttributeError):
            pass


def _assemble(tok: dict, evs: dict, u: np.ndarray, cfg: FitConfig, axis: str,
              seconds: float) -> FitResult:
    N = len(tok["b"])
    n_ev = tok["n_events"].astype(np.int64)
    slot = np.arange(2)[None, :] < n_ev[:, None]              # (N, 2)
    tok_idx = np.arange(N, dtype=np.int64)
    events = {"tok_idx": np.broadcast_to(tok_idx[:, None], (N, 2))[slot],
              "a": evs["a"][slot], "mu": evs["mu"][slot], "width": evs["width"][slot]}
    if cfg.uncertainty:
        events["mu_se"] = evs["mu_se"][slot]
    classes = np.array(CLASSES, dtype=object)
    models = np.array(MODELS, dtype=object)
    tokens = {"tok_idx": tok_idx, "b": tok["b"], "c": tok["c"], "n_events": n_ev, "r2": tok["r2"],
              "sse": tok["sse"], "class": classes[tok["class"]], "model": models[tok["model"]],
              "bic_gap": tok["bic_gap"], "sse_sigmoid1": tok["sse_sigmoid1"],
              "sse_sigmoid2": tok["sse_sigmoid2"], "spread": tok["spread"]}
    counts = np.bincount(tok["class"], minlength=len(CLASSES))
    mcounts = np.bincount(tok["model"], minlength=len(MODELS))
    summary = {
        "n_tok": int(N), "n_ckpt": int(len(u)), "axis": axis,
        "u_min": float(u[0]), "u_max": float(u[-1]),
        "class_share": {c: float(counts[i] / max(N, 1)) for i, c in enumerate(CLASSES)},
        "model_share": {m: float(mcounts[i] / max(N, 1)) for i, m in enumerate(MODELS)},
        "median_r2": float(np.nanmedian(tok["r2"])) if N else float("nan"),
        "sigmoid_share": float((tok["model"] >= 2).mean()) if N else 0.0,
        "events_per_token": float(n_ev.mean()) if N else 0.0,
        "n_events": int(n_ev.sum()),
        "total_drop_nats_mean": float(np.nansum(events["a"]) / max(N, 1)),
        "max_events": cfg.max_events,
        "seconds": round(seconds, 3),
        "trajectories_per_s": float(N / seconds) if seconds > 0 else None,
        "config": asdict(cfg),
    }
    return FitResult(tokens=tokens, events=events, summary=summary)


# ----------------------------------------------------------------------------- the stage


def load_axis(run: RunDir, name: str) -> tuple[np.ndarray, np.ndarray]:
    """u = ln x for checkpoints with x > 0 of column `name` of RUN/trace/axis.parquet, and the
    boolean mask over the K rows that were kept."""
    table = read_parquet(run.trace_axis)
    if name not in table:
        raise ConfigError(f"axis {name!r} is not a column of {run.trace_axis}",
                          f"choose one of: {', '.join(sorted(table))}")
    x = np.asarray(table[name], dtype=np.float64)
    if not np.isfinite(x).all():
        raise DataError(f"axis {name!r} in {run.trace_axis} has {int((~np.isfinite(x)).sum())} "
                        "non-finite values", "re-run `tokenclock trace` or choose another axis")
    keep = x > 0
    xs = x[keep]
    if len(xs) and not (np.diff(xs) > 0).all():
        raise DataError(f"axis {name!r} in {run.trace_axis} is not strictly increasing",
                        "checkpoints must be traced in increasing order without duplicates")
    if keep.sum() < 4:
        raise DataError(f"axis {name!r} has only {int(keep.sum())} checkpoints with x > 0; "
                        "a sigmoid fit needs at least 4", "trace more checkpoints")
    return np.log(xs), keep


def _fit_axis(run: RunDir, loss_kn, name: str, cfg: FitConfig, progress: bool) -> FitResult:
    u, keep = load_axis(run, name)
    if len(keep) != loss_kn.shape[0]:
        raise DataError(f"{run.trace_axis} has {len(keep)} rows but {run.trace_loss} has "
                        f"{loss_kn.shape[0]} checkpoints", "re-run `tokenclock trace RUN`")
    mat = loss_kn if keep.all() else _RowSubset(loss_kn, np.nonzero(keep)[0])
    return fit_matrix(mat, u, cfg, progress=progress, axis=name)


class _RowSubset:
    """A (K', N) view of kept rows of a (K, N) memmap that reads columns lazily, chunk by chunk."""

    ndim = 2

    def __init__(self, base, rows: np.ndarray):
        self.base, self.rows = base, rows
        self.shape = (len(rows), base.shape[1])
        self._mmap = getattr(base, "_mmap", None)

    def __getitem__(self, idx):
        _, cols = idx
        return np.asarray(self.base[:, cols])[self.rows]


def fit(run_dir, cfg: FitConfig | None = None, *, progress: bool = True) -> dict:
    """The fit stage: fit RUN/trace/loss.npy along cfg.axis into RUN/fit/ and along each extra
    axis into RUN/fit/<axis>/. Returns the primary summary."""
    cfg = cfg or FitConfig()
    run = run_dir if isinstance(run_dir, RunDir) else RunDir(run_dir)
    if not run.trace_loss.is_file():
        raise RunDirError(f"{run.trace_loss} does not exist", "run `tokenclock trace RUN` first")
    with run_lock(run, "fit"):
        t0 = time.perf_counter()
        update_stage(run, "fit", "running", config=asdict(cfg),
                     inputs={"loss": str(run.trace_loss.relative_to(run.root)),
                             "axis": str(run.trace_axis.relative_to(run.root))})
        try:
            loss_kn = read_npy(run.trace_loss, mmap=True)
            if loss_kn.ndim != 2:
                raise DataError(f"{run.trace_loss} has shape {loss_kn.shape}, expected (K, N)",
                                "re-run `tokenclock trace RUN`")
            primary = _fit_axis(run, loss_kn, cfg.axis, cfg, progress)
            primary.write(run.fit_dir)
            columns = read_parquet(run.trace_axis)
            for name in cfg.extra_axes:
                if name not in columns:
                    warnings.warn(f"fit: axis {name!r} not in {run.trace_axis} "
                                  f"(has {', '.join(sorted(columns))}); skipped", stacklevel=2)
                    continue
                _fit_axis(run, loss_kn, name, cfg, progress).write(run.fit_clock_dir(name))
        except BaseException:
            update_stage(run, "fit", "failed", seconds=time.perf_counter() - t0)
            raise
        update_stage(run, "fit", "done", config=asdict(cfg), seconds=time.perf_counter() - t0)
    return primary.summary
