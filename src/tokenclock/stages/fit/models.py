"""One block of trajectories through the fit's per-token models (torch on a block in memory, no
I/O): every model fitted, one chosen per token by BIC, results mapped back to nats, classes.

Models per token (chosen by BIC = K ln(SSE/K) + p ln K): `flat` (b), `linear` (b + c (u - u_max);
the `c` column, 0 for other models),
`sigmoid1` (b + a s((mu - u)/w)), `sigmoid2` (two events) and, with fit.max_events 3,
`sigmoid3` (three events: a token that rises, falls back and then drops, as the synthetic
control's value tokens do). `bic_gap` = min BIC of flat/linear
minus min BIC of the sigmoid models: > 0 means a sigmoid is preferred, by that many BIC units.

Physical bounds (token_bounds; off with fit.loss_floor null and fit.a_max_noise_sds inf): every
fitted level in the observed range stays >= fit.loss_floor (b, the curve at every checkpoint, and the linear
model's line: a line that leaves the floor is no candidate), one event's change between the first
and last checkpoint is at most the trajectory's range plus noise, and |a| at most the highest
loss minus the floor plus noise. Events with a midpoint outside (or within the early / late
margin of) the observed range are censored (resolution.censored).

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

torch, and the Levenberg-Marquardt engine that is written in it, are imported inside the functions
(importing tokenclock and `tokenclock --help` stay fast).
"""
from __future__ import annotations

import math

import numpy as np

from tokenclock.stages.fit.config import FitConfig
from tokenclock.stages.fit.outliers import excluded_models

CLASSES = ("learned", "rise-then-fall", "forgotten", "flat", "early", "late", "irregular")
"""The token classes, in the order every table, figure and legend lists them (the one list)."""
MODELS = ("flat", "linear", "sigmoid1", "sigmoid2", "sigmoid3")
_N_PARAMS = (1, 2, 4, 7, 10)
MIN_POINTS_EVENTS = {2: 9, 3: 13}  # checkpoints a model of 2 or 3 events needs (K > 8, K > 12)


def event_slots(cfg: FitConfig) -> int:
    """Event columns per token in a block's results: 2, or 3 with fit.max_events 3."""
    return max(2, cfg.max_events)


def fitted_models(cfg: FitConfig) -> tuple[str, ...]:
    """The models whose shares a fit reports: sigmoid3 only when fit.max_events allows it."""
    return MODELS if cfg.max_events >= 3 else MODELS[:4]


def fit_block(Y: np.ndarray, u: np.ndarray, cfg: FitConfig, ctx: dict) -> dict[str, np.ndarray]:
    """Fit trajectories Y (C, K) (finite) along u (K,): every model, BIC choice, classes.

    ctx holds what every block along the same u shares: u_min, u_max, mu_bounds, w_bounds and the
    width floor (set by the caller: fitter._context) and the grid bases and LM bounds (cached here
    on first use)."""
    import torch

    dev, dt = torch.device(cfg.device), getattr(torch, cfg.dtype)
    Yd, m, sd, ys = _standardize(Y, dev, dt)
    ut = torch.as_tensor(u, dtype=dt, device=dev)
    tb = token_bounds(Yd, m, sd, cfg, dt)
    sse, params, jtj, slope = _fit_models(ys, ut, cfg, ctx, tb)
    excluded = excluded_models(params, ut, ctx.get("bounds"), cfg) if params else {}
    below = _line_below_floor(slope, ut, tb)
    if below is not None:
        excluded = {**excluded, "linear": below}
    names, S, best, gap = _choose_by_bic(sse, ys.shape[1], dev, excluded, cfg.penalty)
    b, n_events, ev = _chosen_in_nats(names, best, params, jtj, sse, m, sd, slope, ut, cfg)
    sse_std = S.gather(1, best[:, None])[:, 0]
    res = _token_columns(Yd, sd, sse_std, sse, slope, names, best, b, n_events, gap, fitted_models(cfg))
    res = {k: v.cpu().numpy() for k, v in res.items()}
    res.update({f"ev_{k}": v.cpu().numpy() for k, v in ev.items()})
    res["class"] = classify(res, ctx["u_min"], ctx["u_max"], cfg)
    return res


def _standardize(Y: np.ndarray, dev, dt):
    """Yd (C, K) float64 in nats, its per-token mean m and std sd (1 where constant), and the
    standardized trajectories ys = (Yd - m) / sd in the compute dtype: all work happens on ys."""
    import torch

    Yd = torch.as_tensor(np.ascontiguousarray(Y), device=dev).to(torch.float64)
    m = Yd.mean(1)
    sd = Yd.std(1, unbiased=False)
    sd = torch.where(sd > 0, sd, torch.ones_like(sd))
    ys = ((Yd - m[:, None]) / sd[:, None]).to(dt)          # standardized, (C, K)
    return Yd, m, sd, ys


def token_bounds(Yd, m, sd, cfg: FitConfig, dt):
    """The physical bounds of each token (levenberg_marquardt.TokenBounds, standardized units),
    with slack = cfg.a_max_noise_sds noise SDs (the noise SD from consecutive differences:
    median |y_k+1 - y_k| / 0.954, which one step barely moves):
    - the change one event makes between the first and last checkpoint is at most the
      trajectory's range (max - min) + slack: what the data show;
    - |a| is at most the highest loss observed minus cfg.loss_floor + slack: what the loss can
      move (no cap without a floor); a censored event's a may exceed the range, never this;
    - every level in the observed range is >= cfg.loss_floor (a loss is >= 0).
    None when both are off (loss_floor null, a_max_noise_sds inf): the unbounded fitter."""
    import torch

    if cfg.loss_floor is None and math.isinf(cfg.a_max_noise_sds):
        return None
    from tokenclock.stages.fit.levenberg_marquardt import TokenBounds  # lazy: imports torch

    top = Yd.max(1).values
    noise = Yd.diff(dim=1).abs().median(1).values / 0.954   # sqrt(2) x 0.6745 sd for iid noise
    slack = cfg.a_max_noise_sds * noise
    change_max = (top - Yd.min(1).values + slack) / sd
    if cfg.loss_floor is None:
        return TokenBounds(a_max=torch.full_like(sd, float("inf")).to(dt),
                           change_max=change_max.to(dt))
    a_max = ((top - cfg.loss_floor).clamp_min(0) + slack) / sd
    return TokenBounds(a_max=a_max.to(dt), change_max=change_max.to(dt),
                       b_min=((cfg.loss_floor - m) / sd).to(dt))


def _line_below_floor(slope, ut, tb):
    """(C,) True where the linear model's line leaves the level floor inside the observed range
    (at either end): such a line is no candidate. None without a floor."""
    if tb is None or tb.b_min is None:
        return None
    ends = slope[:, None] * (ut[[0, -1]] - ut.mean())[None, :]   # (C, 2), standardized
    return ends.min(1).values < tb.b_min


def _fit_models(ys, ut, cfg: FitConfig, ctx: dict, tb=None):
    """SSE (standardized) of every model, the sigmoid models' parameters and J^T J, and the
    linear model's slope: flat and linear in closed form, sigmoids by grid + LM within the
    tokens' own bounds tb (token_bounds)."""
    import torch

    from tokenclock.stages.fit import levenberg_marquardt as lm  # lazy: imports torch

    spacing = cfg.w_min_spacing if cfg.width_floor == "spacing" else None
    if "gb" not in ctx:
        ctx["gb"] = lm.GridBasis(ut, cfg.grid_mu, cfg.grid_w, cfg.mu_margin, cfg.w_min_frac,
                                 cfg.w_max_frac, spacing)
        lo, hi = ctx["mu_bounds"]
        fl = [None, None] if ctx.get("floor") is None else [
            torch.as_tensor(v, dtype=ut.dtype, device=ut.device) for v in ctx["floor"]]
        ctx["bounds"] = lm.Bounds(lo, hi, *ctx["w_bounds"], floor_nodes=fl[0], floor_values=fl[1],
                                  u_first=ctx["u_min"], u_last=ctx["u_max"], u_obs=ut)
    gb, bounds = ctx["gb"], ctx["bounds"]
    K = ys.shape[1]
    sst = (ys * ys).sum(1)                                   # = K unless the row is constant
    uc = ut - ut.mean()
    sse = {"flat": sst, "linear": (sst - (ys @ uc) ** 2 / (uc @ uc)).clamp_min(0)}
    slope = (ys @ uc) / (uc @ uc)
    params, jtj = {}, {}
    if cfg.max_events >= 1:
        cap = None if spacing is None else (bounds.a_max if tb is None
                                            else tb.a_max.clamp_max(bounds.a_max))
        p1 = lm.grid_one(ys, gb, cap)
        params["sigmoid1"], sse["sigmoid1"], jtj["sigmoid1"] = lm.levenberg_marquardt(
            ys, ut, p1, bounds, cfg.lm_iters, tb=tb)
    if cfg.max_events >= 2 and K >= MIN_POINTS_EVENTS[2]:
        # two starting points: the second event fitted on the residual of the first, and the
        # best pair of a coarse grid (finds two-step curves the residual route misses)
        p2 = lm.grid_two(ys, ut, params["sigmoid1"], gb, cap)
        f2, _ = lm.evaluate(p2, ut, jac=False)
        if "pb" not in ctx:
            ctx["pb"] = lm.PairBasis(lm.GridBasis(ut, cfg.pair_grid_mu, cfg.pair_grid_w,
                                                  cfg.mu_margin, cfg.w_min_frac, cfg.w_max_frac,
                                                  spacing))
        pp, sse_pp = lm.grid_pair(ys, ctx["pb"])
        use_pair = sse_pp < ((ys - f2) ** 2).sum(1)
        p2 = torch.where(use_pair[:, None], pp, p2)
        if tb is not None:
            p2 = _feasible_start(ys, ut, p2, params["sigmoid1"], bounds, tb)
        p2, s2, j2 = lm.levenberg_marquardt(ys, ut, p2, bounds, cfg.lm_iters, tb=tb)
        params["sigmoid2"], sse["sigmoid2"], jtj["sigmoid2"] = p2, s2, j2
    if cfg.max_events >= 3 and K >= MIN_POINTS_EVENTS[3]:
        p3 = _third_event_start(ys, ut, params["sigmoid1"], params["sigmoid2"], gb, ctx["pb"], cap)
        if tb is not None:
            p3 = _feasible_start(ys, ut, p3, params["sigmoid2"], bounds, tb)
        params["sigmoid3"], sse["sigmoid3"], jtj["sigmoid3"] = lm.levenberg_marquardt(
            ys, ut, p3, bounds, cfg.lm_iters, tb=tb)
    return sse, params, jtj, slope


def _third_event_start(ys, ut, p1, p2, gb, pb, cap):
    """The three-event start (C, 10), the better of: the two-event fit plus the best single event
    on its residual, and the one-event fit plus the best pair of events on its residual (a rise
    and a fall that the two-event fit merged)."""
    import torch

    from tokenclock.stages.fit import levenberg_marquardt as lm  # lazy: imports torch

    def on_residual(p, add):
        r = ys - lm.evaluate(p, ut, jac=False)[0]
        off = r.mean(1, keepdim=True)
        q = add(r - off)
        return torch.cat([p[:, :1] + off + q[:, :1], p[:, 1:], q[:, 1:]], 1)

    starts = [on_residual(p2, lambda r: lm.grid_one(r, gb, cap)),
              on_residual(p1, lambda r: lm.grid_pair(r, pb)[0])]
    sse = [((ys - lm.evaluate(p, ut, jac=False)[0]) ** 2).sum(1) for p in starts]
    return torch.where((sse[1] < sse[0])[:, None], starts[1], starts[0])


def _feasible_start(ys, ut, p2, p1, bounds, tb):
    """The n-event start p2 within the tokens' bounds: projected, unless the (n-1)-event fit p1
    with an n-th event of a = 0 (feasible, p1's SSE) is closer, so that a start the bounds clamp
    far from the data cannot leave the n-event model worse than the (n-1)-event one."""
    import torch

    from tokenclock.stages.fit import levenberg_marquardt as lm  # lazy: imports torch

    lo, hi = bounds.lo_hi((p2.shape[1] - 1) // 3, p2)
    p2 = bounds.project(p2, lo, hi, tb)
    p0 = torch.cat([p1, torch.zeros_like(p1[:, :1]), p2[:, -2:]], 1)
    sse2 = ((ys - lm.evaluate(p2, ut, jac=False)[0]) ** 2).sum(1)
    sse0 = ((ys - lm.evaluate(p0, ut, jac=False)[0]) ** 2).sum(1)
    return torch.where((sse0 < sse2)[:, None], p0, p2)


def _choose_by_bic(sse: dict, K: int, dev, excluded: dict | None = None, penalty: str = "bic"):
    """The fitted model names (in MODELS order), their SSE (C, M) float64, each token's best model
    (index into names) and bic_gap (flat/linear minus sigmoid BIC; NaN without sigmoids).
    excluded: model name -> (C,) mask of tokens for which that model is not a candidate
    (outliers.excluded_models). penalty `bic_small_k` multiplies p ln K by K / (K - p - 1)
    (no candidate where p >= K - 1)."""
    import torch

    # BIC in standardized units (differences are scale-free); a floor keeps ln finite.
    names = [n for n in MODELS if n in sse]
    S = torch.stack([sse[n].double() for n in names], 1)     # (C, M)
    pen = torch.tensor([_N_PARAMS[MODELS.index(n)] for n in names], dtype=torch.float64,
                       device=dev)
    if penalty == "bic_small_k":
        room = K - pen - 1
        pen = torch.where(room > 0, pen * K / room.clamp_min(1), torch.full_like(pen, float("inf")))
    bic = K * torch.log(S.clamp_min(0) / K + 1e-9) + pen * math.log(K)
    for name, mask in (excluded or {}).items():
        if mask is not None and name in names:
            j = names.index(name)
            bic[:, j] = torch.where(mask, torch.full_like(bic[:, j], float("inf")), bic[:, j])
    best = bic.argmin(1)
    if any(n.startswith("sigmoid") for n in names):
        gap = bic[:, :2].min(1).values - bic[:, 2:].min(1).values
        if excluded or penalty != "bic":  # every sigmoid model excluded: no sigmoid to compare with
            gap = torch.where(torch.isneginf(gap), torch.full_like(gap, float("nan")), gap)
    else:
        gap = torch.full((S.shape[0],), float("nan"), dtype=torch.float64, device=dev)
    return names, S, best, gap


def _chosen_in_nats(names, best, params, jtj, sse, m, sd, slope, ut, cfg: FitConfig):
    """Each token's final level b (nats), its number of events and its event slots (C, slots) a,
    mu, width, mu_se from its chosen model (unused slots NaN; events ordered by midpoint)."""
    import torch

    from tokenclock.stages.fit import levenberg_marquardt as lm  # lazy: imports torch

    C, K, dev = len(m), ut.shape[0], m.device
    ev = {k: torch.full((C, event_slots(cfg)), float("nan"), dtype=torch.float64, device=dev)
          for k in ("a", "mu", "width", "mu_se")}
    b = m.clone()                                            # flat: the mean
    b = torch.where(best == 1, m + sd * (slope.double() * (ut[-1] - ut.mean()).double()), b)
    n_events = torch.zeros(C, dtype=torch.int64, device=dev)
    for mi, name in enumerate(names):
        if not name.startswith("sigmoid"):
            continue
        sel = best == mi
        p = params[name].double()
        ne = int(name[-1])
        order = _by_midpoint(p)
        p = p.gather(1, order)
        if cfg.uncertainty:
            se = lm.parameter_se(jtj[name].double(), sse[name].double(), K).gather(1, order)
        level = m + sd * p[:, 0]
        if cfg.loss_floor is not None:  # the LM kept b at the floor in float32: no rounding below
            level = level.clamp_min(cfg.loss_floor)
        b = torch.where(sel, level, b)
        n_events = torch.where(sel, torch.full_like(n_events, ne), n_events)
        for j in range(ne):
            ev["a"][:, j] = torch.where(sel, sd * p[:, 1 + 3 * j], ev["a"][:, j])
            ev["mu"][:, j] = torch.where(sel, p[:, 2 + 3 * j], ev["mu"][:, j])
            ev["width"][:, j] = torch.where(sel, p[:, 3 + 3 * j], ev["width"][:, j])
            if cfg.uncertainty:
                ev["mu_se"][:, j] = torch.where(sel, se[:, 2 + 3 * j], ev["mu_se"][:, j])
    return b, n_events, ev


def _by_midpoint(p):
    """(C, P) gather index that orders each token's events by midpoint (b first; stable)."""
    import torch

    n = (p.shape[1] - 1) // 3
    rank = torch.argsort(p[:, 2::3], dim=1, stable=True)                      # (C, n)
    cols = 1 + 3 * rank[:, :, None] + torch.arange(3, device=p.device)         # (C, n, 3)
    return torch.cat([torch.zeros_like(rank[:, :1]), cols.reshape(len(p), 3 * n)], 1)


def _token_columns(Yd, sd, sse_std, sse, slope, names, best, b, n_events, gap, models) -> dict:
    """The per-token columns of fit/tokens.parquet (tensors): b, c, n_events, r2, sse (nats²),
    model code, bic_gap, spread and each sigmoid model's own SSE."""
    import torch

    C, K, dev = Yd.shape[0], Yd.shape[1], Yd.device
    sd2 = sd * sd
    raw_sst = sse["flat"].double()                           # SST: the flat model's SSE
    r2 = torch.where(raw_sst > 0, 1 - sse_std / raw_sst.clamp_min(1e-30),
                     torch.ones_like(raw_sst))
    srt = Yd.sort(1).values                                  # spread: nearest-rank percentiles
    spread = srt[:, round(0.9 * (K - 1))] - srt[:, round(0.1 * (K - 1))]
    model_codes = torch.tensor([MODELS.index(n) for n in names], device=dev)
    # linear model: l(u) = b + c (u - u_max), b the final level; c in nats per unit of ln x
    c = torch.where(best == names.index("linear"), sd * slope.double(), torch.zeros_like(b))
    res = {"b": b, "c": c, "n_events": n_events, "r2": r2, "sse": sse_std * sd2,
           "model": model_codes[best], "bic_gap": gap, "spread": spread}
    for name in models[2:]:
        res[f"sse_{name}"] = (sse[name].double() * sd2 if name in sse
                              else torch.full((C,), float("nan"), dtype=torch.float64, device=dev))
    return res


def classify(r: dict[str, np.ndarray], u_min: float, u_max: float, cfg: FitConfig) -> np.ndarray:
    """Class codes (index into CLASSES) by the rules in the module docstring; vectorized."""
    span = u_max - u_min
    a = np.nan_to_num(r["ev_a"], nan=0.0)                    # (C, slots)
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
    finite &= np.where(n[:, None] > np.arange(a.shape[1])[None, :],
                       np.isfinite(r["ev_a"]) & np.isfinite(r["ev_mu"]) & np.isfinite(r["ev_width"]),
                       True).all(1)
    irregular = ~finite | ((r["r2"] < cfg.min_r2) & (r["spread"] >= cfg.irregular_spread_nats))
    cls[irregular] = CLASSES.index("irregular")
    return cls
