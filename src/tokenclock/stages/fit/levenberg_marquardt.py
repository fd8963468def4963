"""The batched fitting engine behind the fit's models (models.py): grid search and
Levenberg-Marquardt for a block of trajectories at once (torch tensors in, torch tensors out; no
per-token Python loop, no I/O).

All work happens on standardized trajectories (per-token mean 0, variance 1), so one set of
tolerances and one dtype (float32) serve any loss scale; models.py maps results back to nats.
Parameter layout per token: [b, a1, mu1, w1] or [b, a1, mu1, w1, a2, mu2, w2].
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from tokenclock.curves import grid, logistic


@dataclass
class Bounds:
    """Constraints on midpoints and widths (units of u = ln x), applied inside LM: a box, and
    for the `spacing` rule a width floor that follows mu (a projection, not a box bound)."""

    mu_lo: float
    mu_hi: float
    w_lo: float
    w_hi: float
    a_max: float = 8.0
    """|a| in units of the trajectory's standard deviation: censored events (mu beyond the data)
    would otherwise extrapolate to absurd drops."""
    floor_nodes: torch.Tensor | None = None
    """(M,) increasing u of the width floor's nodes (curves.spacing_nodes); None: box only."""
    floor_values: torch.Tensor | None = None
    """(M,) the smallest width at each node (w_min_spacing x the gap); linear in between."""
    u_first: float | None = None
    """The first observed u (a rise, a < 0, is lowest there: the level floor of TokenBounds)."""
    u_last: float | None = None
    """The last observed u (with u_first: the change an event makes over the observed range)."""
    u_obs: torch.Tensor | None = None
    """(K,) every observed u: the level floor holds the curve at each of them. None: the floor is
    kept where every rise is largest and no drop counts (at u_first; stricter than the loss, as it
    forbids a rise larger than the final level)."""

    def lo_hi(self, n_events: int, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        inf = float("inf")
        lo = [-inf] + [-self.a_max, self.mu_lo, self.w_lo] * n_events
        hi = [inf] + [self.a_max, self.mu_hi, self.w_hi] * n_events
        return like.new_tensor(lo), like.new_tensor(hi)

    def project(self, p: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor,
                tb: TokenBounds | None = None) -> torch.Tensor:
        """p (C, P) clamped to the box, then each width raised to the floor at its own mu; with
        tb, each |a| clamped to the token's own cap and b raised so that the curve stays at or
        above the token's level floor over the observed range."""
        p = torch.maximum(torch.minimum(p, hi), lo)
        if self.floor_nodes is None and tb is None:
            return p
        p = p.clone()
        if self.floor_nodes is not None:
            mu, w = p[:, 2::3], p[:, 3::3]                   # (C, n_events)
            floor = interp(mu, self.floor_nodes.to(p), self.floor_values.to(p))
            p[:, 3::3] = torch.maximum(w, floor)
        if tb is not None:
            cap = tb.a_max.to(p)[:, None]
            a = torch.maximum(torch.minimum(p[:, 1::3], cap), -cap)
            mu, w = p[:, 2::3], p[:, 3::3]
            s0 = logistic((mu - self.u_first) / w)
            seen = (s0 - logistic((mu - self.u_last) / w)) * a.abs()   # change inside the range
            a = a * (tb.change_max.to(p)[:, None] / seen.clamp_min(1e-30)).clamp_max(1)
            p[:, 1::3] = a
            if tb.b_min is not None:
                if self.u_obs is not None:  # the curve's lowest point over the checkpoints
                    z = (mu[:, :, None] - self.u_obs.to(p)[None, None, :]) / w[:, :, None]
                    low = (a[:, :, None] * logistic(z)).sum(1).min(1).values
                else:  # every rise (a < 0) at its largest (the first u), no drop counted
                    low = (a.clamp_max(0) * s0).sum(1)
                p[:, 0] = torch.maximum(p[:, 0], tb.b_min.to(p) - low)
        return p


@dataclass
class TokenBounds:
    """Physical bounds of each token (standardized units, (C,) each): the largest |a| (what the
    loss can move), the largest change one event may make between the first and the last
    observed u (what the data show), and the standardized value of the lowest level a curve may
    reach in the observed range (a loss >= 0; None: no level floor)."""

    a_max: torch.Tensor
    change_max: torch.Tensor
    b_min: torch.Tensor | None = None


def interp(x: torch.Tensor, xp: torch.Tensor, fp: torch.Tensor) -> torch.Tensor:
    """np.interp for tensors: piecewise-linear through (xp, fp), xp increasing (M >= 2), the
    edge values beyond either end."""
    i = torch.searchsorted(xp, x.contiguous()).clamp(1, xp.shape[0] - 1)
    x0, x1, f0, f1 = xp[i - 1], xp[i], fp[i - 1], fp[i]
    t = ((x - x0) / (x1 - x0)).clamp(0, 1)
    return f0 + t * (f1 - f0)


def evaluate(p: torch.Tensor, u: torch.Tensor, jac: bool = True):
    """Model values f (C, K) and Jacobian J (C, P, K) (parameter-major: cheap to build and to
    multiply) for parameters p (C, P), P = 1 + 3 n_events."""
    n_ev = (p.shape[1] - 1) // 3
    f = p[:, :1].expand(-1, u.shape[0])
    cols = [torch.ones_like(f)] if jac else None
    for j in range(n_ev):
        a, mu, w = (p[:, 1 + 3 * j + i, None] for i in range(3))
        z = (mu - u) / w                      # (C, K)
        s = logistic(z)
        f = f + a * s
        if jac:
            dmu = a * s * (1 - s) / w         # d f / d mu (s' = s (1 - s), s in hand)
            cols += [s, dmu, -dmu * z]        # d f / d a, d mu, d w
    return f, (torch.stack(cols, dim=1) if jac else None)


def _normal_equations(y, u, p):
    """SSE (C,), J^T J (C, P, P) and J^T r (C, P) at p."""
    f, J = evaluate(p, u)
    r = y - f
    return (r * r).sum(1), J @ J.transpose(1, 2), (J @ r[:, :, None])[:, :, 0]


def levenberg_marquardt(y: torch.Tensor, u: torch.Tensor, p: torch.Tensor, bounds: Bounds,
                        iters: int = 20, rtol: float = 1e-6, tb: TokenBounds | None = None):
    """Refine p (C, P) for trajectories y (C, K) by projected LM with a per-token damping factor
    (every trial point projected by bounds.project, with the tokens' own bounds tb).

    A step is kept only where it lowers that token's SSE, so SSE never increases. Returns
    (p, sse (C,), JtJ (C, P, P) at the final p, undamped: for standard errors)."""
    lo, hi = bounds.lo_hi((p.shape[1] - 1) // 3, p)
    p = bounds.project(p, lo, hi, tb)
    sse, JtJ, g = _normal_equations(y, u, p)
    lam = torch.full_like(sse, 1e-2)
    for _ in range(iters):
        d = torch.diagonal(JtJ, dim1=1, dim2=2)
        # Marquardt scaling plus a small absolute floor: a vanished event has zero columns.
        damp = lam[:, None] * (d + 1e-6 * d.mean(1, keepdim=True)) + 1e-10
        A = JtJ + torch.diag_embed(damp)
        step = torch.linalg.solve_ex(A, g[:, :, None])[0][:, :, 0]
        pn = bounds.project(p + step, lo, hi, tb)
        ssen, JtJn, gn = _normal_equations(y, u, pn)
        ok = torch.isfinite(ssen) & (ssen < sse) & torch.isfinite(pn).all(1)
        gain = torch.where(ok, (sse - ssen) / (sse + 1e-12), torch.zeros_like(sse))
        p = torch.where(ok[:, None], pn, p)
        JtJ = torch.where(ok[:, None, None], JtJn, JtJ)
        g = torch.where(ok[:, None], gn, g)
        sse = torch.where(ok, ssen, sse)
        lam = torch.where(ok, lam * 0.3, lam * 5).clamp(1e-7, 1e7)
        if float(gain.max()) < rtol:
            break
    eye = torch.eye(p.shape[1], dtype=p.dtype, device=p.device)
    return p, sse, JtJ + 1e-12 * eye


def parameter_se(JtJ: torch.Tensor, sse: torch.Tensor, n_points: int) -> torch.Tensor:
    """Standard errors sqrt(diag(sigma^2 (J^T J)^-1)), sigma^2 = SSE / (K - P); NaN when singular."""
    P = JtJ.shape[1]
    dof = max(n_points - P, 1)
    inv, info = torch.linalg.inv_ex(JtJ)
    var = torch.diagonal(inv, dim1=1, dim2=2) * (sse / dof)[:, None]
    var = torch.where((info == 0)[:, None] & (var >= 0), var, torch.full_like(var, float("nan")))
    return var.sqrt()


class GridBasis:
    """Centred, normalized basis curves for every (mu, w) grid cell: (K, G) tensors."""

    def __init__(self, u: torch.Tensor, n_mu: int, n_w: int, margin: float, w_min_frac: float,
                 w_max_frac: float, w_min_spacing: float | None = None):
        u_np = u.double().cpu().numpy()
        mu, w = grid(u_np, n_mu, n_w, margin, w_min_frac, w_max_frac, w_min_spacing)
        self.mu = torch.as_tensor(mu, dtype=u.dtype, device=u.device)   # (G,)
        self.w = torch.as_tensor(w, dtype=u.dtype, device=u.device)
        S = logistic((self.mu[None, :] - u[:, None]) / self.w[None, :])  # (K, G)
        self.mean = S.mean(0)                                        # (G,)
        self.Sc = S - self.mean                                      # centred
        self.norm2 = (self.Sc * self.Sc).sum(0)                      # (G,)
        self.E = self.Sc / self.norm2.sqrt().clamp_min(1e-12)        # unit columns


def grid_one(ys: torch.Tensor, gb: GridBasis, a_max: torch.Tensor | float | None = None) -> torch.Tensor:
    """Best single event for standardized trajectories ys (C, K) (mean 0): for each cell the
    least-squares (b, a) is exact; the cell with the largest SSE reduction wins. With a_max, cells
    whose exact |a| exceeds it are skipped (LM would clamp a there, far from any fit: a censored
    cell's huge a); a_max is one number or one per token (C,). Returns p (C, 4)."""
    proj = ys @ gb.E                                    # (C, G): <y, e_g>
    score = proj * proj
    if a_max is not None:
        a_all = proj / gb.norm2.sqrt().clamp_min(1e-12)
        score = torch.where(a_all.abs() <= _per_token(a_max, ys), score, torch.full_like(score, -1.0))
    g = score.argmax(1)
    a = proj.gather(1, g[:, None])[:, 0] / gb.norm2[g].sqrt().clamp_min(1e-12)
    b = -a * gb.mean[g]
    return torch.stack([b, a, gb.mu[g], gb.w[g]], dim=1)


def _per_token(a_max, ys: torch.Tensor):
    """a_max as a (C, 1) column (one per token) or a number, to compare with (C, G) cells."""
    return a_max.to(ys)[:, None] if isinstance(a_max, torch.Tensor) else a_max


def grid_two(ys: torch.Tensor, u: torch.Tensor, p1: torch.Tensor, gb: GridBasis,
             a_max: torch.Tensor | float | None = None) -> torch.Tensor:
    """Add a second event to one-event fits p1 (C, 4): for every cell, the exact least-squares
    (b, a1, a2) with the first event's (mu1, w1) held fixed (via the part of the new basis curve
    orthogonal to the first), best cell per token. Returns p (C, 7)."""
    b1, a1, mu1, w1 = p1.unbind(1)
    s1 = logistic((mu1[:, None] - u) / w1[:, None])     # (C, K)
    s1c = s1 - s1.mean(1, keepdim=True)
    n1 = (s1c * s1c).sum(1).sqrt().clamp_min(1e-12)          # (C,)
    e1 = s1c / n1[:, None]
    a1_0 = (ys * e1).sum(1) / n1                             # exact a1 for fixed (mu1, w1)
    r = ys - a1_0[:, None] * s1c                             # residual, orthogonal to 1 and e1
    RS = r @ gb.Sc                                           # (C, G)
    ES = e1 @ gb.Sc                                          # (C, G)
    denom = gb.norm2[None, :] - ES * ES                      # |part of s2c orthogonal to e1|^2
    valid = denom > 1e-4 * gb.norm2[None, :]
    if a_max is not None:  # as in grid_one: a cell whose exact |a2| exceeds a_max is no start
        valid &= RS.abs() <= _per_token(a_max, ys) * denom.clamp_min(1e-12)
    score = torch.where(valid, RS * RS / denom.clamp_min(1e-12), torch.zeros_like(RS))
    g = score.argmax(1)
    a2 = RS.gather(1, g[:, None])[:, 0] / denom.gather(1, g[:, None])[:, 0].clamp_min(1e-12)
    a2 = torch.where(valid.gather(1, g[:, None])[:, 0], a2, torch.zeros_like(a2))
    a1n = a1_0 - a2 * ES.gather(1, g[:, None])[:, 0] / n1
    mu2, w2 = gb.mu[g], gb.w[g]
    s2 = logistic((mu2[:, None] - u) / w2[:, None])
    b = (ys - a1n[:, None] * s1 - a2[:, None] * s2).mean(1)
    return torch.stack([b, a1n, mu1, w1, a2, mu2, w2], dim=1)


class PairBasis:
    """Orthonormal pairs (q1, q2) spanning every pair of cells of a coarse grid: (K, M) each.
    The exact two-event least squares for a pair reduces the SSE by (y.q1)^2 + (y.q2)^2."""

    def __init__(self, gb: GridBasis):
        G = gb.E.shape[1]
        i, j = torch.triu_indices(G, G, offset=1, device=gb.E.device)
        rho = (gb.E[:, i] * gb.E[:, j]).sum(0)                       # (M,) cosine of the pair
        keep = rho.abs() < 0.995                                     # near-duplicates: skip
        self.i, self.j, rho = i[keep], j[keep], rho[keep]
        self.root = (1 - rho * rho).sqrt()
        self.rho = rho
        self.Q1 = gb.E[:, self.i]
        self.Q2 = (gb.E[:, self.j] - rho * self.Q1) / self.root
        self.gb = gb


def grid_pair(ys: torch.Tensor, pb: PairBasis, block: int = 512):
    """Best pair of events per standardized trajectory (C, K): returns (p (C, 7), sse (C,))."""
    C = ys.shape[0]
    best = torch.full((C,), -1.0, dtype=ys.dtype, device=ys.device)
    arg = torch.zeros(C, dtype=torch.long, device=ys.device)
    c1b = torch.zeros_like(best)
    c2b = torch.zeros_like(best)
    for s in range(0, pb.Q1.shape[1], block):
        c1 = ys @ pb.Q1[:, s:s + block]
        c2 = ys @ pb.Q2[:, s:s + block]
        red = c1 * c1 + c2 * c2
        v, k = red.max(1)
        better = v > best
        best = torch.where(better, v, best)
        arg = torch.where(better, k + s, arg)
        c1b = torch.where(better, c1.gather(1, k[:, None])[:, 0], c1b)
        c2b = torch.where(better, c2.gather(1, k[:, None])[:, 0], c2b)
    gb = pb.gb
    gi, gj = pb.i[arg], pb.j[arg]
    rho, root = pb.rho[arg], pb.root[arg]
    a1 = (c1b - c2b * rho / root) / gb.norm2[gi].sqrt()
    a2 = c2b / root / gb.norm2[gj].sqrt()
    b = -(a1 * gb.mean[gi] + a2 * gb.mean[gj])
    p = torch.stack([b, a1, gb.mu[gi], gb.w[gi], a2, gb.mu[gj], gb.w[gj]], dim=1)
    return p, ((ys * ys).sum(1) - best).clamp_min(0)
