"""Single-checkpoint features among fitted events (torch on a block in memory, no I/O): under the
`spacing` width floor an event may be sharper than the checkpoints, so a model can spend an event
on one checkpoint's deviation. Two shapes are told apart from learning events here:

- an excursion: a rise and a fall (either order) whose midpoints lie within
  fit.excursion_spacings local checkpoint spacings of each other (a spike at one or two
  checkpoints);
- an edge step: an event whose change over the observed checkpoints happens by more than
  fit.edge_share between the first two or the last two checkpoints (an outlier at the edge).

A model with such an event is no candidate for that token (models._choose_by_bic). The `span`
rule, whose floor keeps events wider than most gaps, keeps every model (its fits are unchanged).
"""
from __future__ import annotations

from tokenclock.stages.fit.config import FitConfig


def excluded_models(params: dict, ut, bounds, cfg: FitConfig) -> dict:
    """model name -> (C,) bool mask of tokens for which that sigmoid model is no candidate."""
    import torch

    if bounds.floor_nodes is None:
        return {}
    out = {}
    for name, p in params.items():
        mask = torch.zeros(p.shape[0], dtype=torch.bool, device=p.device)
        for j in range((p.shape[1] - 1) // 3):
            mask |= edge_step(p[:, 2 + 3 * j], p[:, 3 + 3 * j], ut, cfg.edge_share)
        if name != "sigmoid1" and cfg.excursion_spacings:
            mask |= excursion(p, bounds, cfg)
        out[name] = mask
    return out


def edge_step(mu, w, ut, share: float):
    """(C,) True where the event (mu, w) changes the curve by more than `share` of its whole
    observed change between the first two or between the last two checkpoints of ut (K,)."""
    from tokenclock.curves import logistic

    if share >= 1:
        return mu.new_zeros(mu.shape, dtype=bool)
    s = logistic((mu[:, None] - ut[None, :]) / w[:, None])      # (C, K), falls along u
    total = s[:, 0] - s[:, -1]
    edge = (s[:, 0] - s[:, 1]).maximum(s[:, -2] - s[:, -1])
    return (total > 0) & (edge > share * total)


def excursion(p, bounds, cfg: FitConfig):
    """(C,) True where two of the events of p (C, 1 + 3 n) are a rise and a fall whose midpoints
    lie within cfg.excursion_spacings local spacings (at their mean midpoint) of each other."""
    from tokenclock.stages.fit.levenberg_marquardt import interp  # lazy: imports torch

    n = (p.shape[1] - 1) // 3
    out = p.new_zeros(p.shape[0], dtype=bool)
    for i in range(n):
        for j in range(i + 1, n):
            a1, mu1, a2, mu2 = p[:, 1 + 3 * i], p[:, 2 + 3 * i], p[:, 1 + 3 * j], p[:, 2 + 3 * j]
            gap = interp((mu1 + mu2) / 2, bounds.floor_nodes, bounds.floor_values) / cfg.w_min_spacing
            out |= (a1 * a2 < 0) & ((mu2 - mu1).abs() < cfg.excursion_spacings * gap)
    return out
