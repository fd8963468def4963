"""The pure part of reshape (arrays in, arrays out; no files): the reshape config, the seeded pool
of training windows, each pool sequence's learnability profile from its fitted learning events, the
per-update sampling weights of each strategy, and the (steps, batch_size) schedule drawn from them
and the token-level loss weights of `token-learnable` (the token analogue of Rho-1's selective
loss: a token weighs most while the reference learned it, a floor before, after, and never).

Learning times live on the log-step fraction f = ln(step) / ln(steps_ref) in [0, 1]; the new run's
update s is at t = ln(s + 1) / ln(steps), so a shorter or smaller proxy reference maps onto it.
"""
from __future__ import annotations

import math

import numpy as np

from tokenclock.curves import event, logistic_prime
from tokenclock.errors import ConfigError, DataError
from tokenclock.stages.fit.config import FitConfig
from tokenclock.stages.fit.fitter import fit_matrix
from tokenclock.stages.reshape.config import STRATEGIES
from tokenclock.windows import batch_offsets

MAX_EVENTS = 2  # the fitter keeps at most two events per token




def pool_offsets(seed: int, n_tokens: int, pool_size: int, seq_len: int) -> np.ndarray:
    """Sorted start offsets of `pool_size` non-overlapping seeded windows of seq_len + 1 tokens."""
    n_slots = (n_tokens - 1) // (seq_len + 1)
    if pool_size > n_slots:
        raise ConfigError(f"reshape pool_size {pool_size} is larger than the {n_slots} windows of "
                          f"{seq_len + 1} tokens in the training stream ({n_tokens} tokens)",
                          f"use --pool-size {n_slots} or less")
    rng = np.random.default_rng([seed, 0x9001])
    return np.sort(rng.permutation(n_slots)[:pool_size]).astype(np.int64) * (seq_len + 1)


def log_fraction(step, total_steps: int) -> np.ndarray:
    """Training progress on the log-step axis: ln(step + 1) / ln(total_steps), in [0, 1]."""
    return np.clip(np.log(np.asarray(step, dtype=np.float64) + 1) / math.log(max(total_steps, 2)), 0, 1)


def sequence_profiles(loss_kn: np.ndarray, steps: np.ndarray, seq_len: int, fit_cfg=None,
                      n_bins: int = 32, progress: bool = False) -> dict[str, np.ndarray]:
    """Per-sequence learnability from a (K, n_seq * seq_len) loss matrix over checkpoint `steps`.

    Returns `learn_frac` (amplitude-weighted mean log-step fraction of the sequence's positive
    events, NaN without events), `learn_hist` (n_seq, n_bins) mean drop per token (nats) by
    learning-time bin, `drop_nats`, `remaining_nats` (drop the fitted curves still predict after
    the last checkpoint), `loss_last`, and `loss_seq` (K', n_seq) / `ckpt_frac` (K',) for loss-based;
    `events` (the fit's event columns) and `u` (ln step of the K' checkpoints) for the token weights,
    so sequence- and token-level strategies share one scoring pass.
    """
    steps = np.asarray(steps, dtype=np.float64)
    keep = steps > 0
    u = np.log(steps[keep])
    loss = np.asarray(loss_kn, dtype=np.float32)[keep]
    K, N = loss.shape
    if N % seq_len:
        raise DataError(f"loss matrix has {N} tokens, not a multiple of seq_len {seq_len}")
    n_seq = N // seq_len
    res = fit_matrix(loss, u, fit_cfg or FitConfig(extra_axes=[]), progress=progress, axis="step")
    ev = res.events
    pos = ev["a"] > 0
    seq = (ev["tok_idx"][pos] // seq_len).astype(np.int64)
    a, mu, w = ev["a"][pos], ev["mu"][pos], ev["width"][pos]
    u_top = u[-1]
    frac = np.clip(mu / u_top, 0, 1)  # ln(step) / ln(steps_ref): step 1 -> 0
    amp = np.bincount(seq, a, minlength=n_seq)
    with np.errstate(invalid="ignore", divide="ignore"):
        learn_frac = np.bincount(seq, a * frac, minlength=n_seq) / amp
    learn_frac[amp <= 0] = np.nan
    b = np.minimum((frac * n_bins).astype(np.int64), n_bins - 1)
    hist = np.zeros((n_seq, n_bins))
    np.add.at(hist, (seq, b), a / seq_len)
    remaining = np.bincount(seq, event(u_top, a, mu, w), minlength=n_seq) / seq_len
    loss_seq = loss.reshape(K, n_seq, seq_len).mean(axis=2)
    return {"learn_frac": learn_frac, "learn_hist": hist, "drop_nats": amp / seq_len,
            "remaining_nats": remaining, "loss_last": loss_seq[-1].astype(np.float64),
            "loss_seq": loss_seq.astype(np.float64), "ckpt_frac": u / u_top, "events": ev, "u": u}


def _box_overlap(t: np.ndarray, window: float, n_bins: int) -> np.ndarray:
    """(len(t), n_bins) share of each [i/n, (i+1)/n) bin inside [t - window/2, t + window/2]."""
    lo_b = np.arange(n_bins) / n_bins
    lo = np.maximum(lo_b[None, :], (t - window / 2)[:, None])
    hi = np.minimum(lo_b[None, :] + 1 / n_bins, (t + window / 2)[:, None])
    return np.clip(hi - lo, 0, None) * n_bins


def _rank_quantile(x: np.ndarray) -> np.ndarray:
    """Quantile in [0, 1] of each value (NaN = never learned in the reference: last)."""
    x = np.where(np.isfinite(x), x, np.inf)
    order = np.argsort(x, kind="stable")
    q = np.empty(len(x))
    q[order] = (np.arange(len(x)) + 0.5) / len(x)
    return q


def sampling_weights(profiles: dict, step, total_steps: int, strategy: str, window: float = 0.2,
                     sharpness: float = 1.0) -> np.ndarray:
    """(len(step), n_seq) probabilities of drawing each pool sequence at each update.

    learnable-now: mass of the sequence's learning-time histogram within `window` of the current
    log-step fraction; easy-to-hard / hard-to-easy: sequences whose learning-time rank quantile
    is within `window` of the linear progress step / total_steps (reversed); loss-based: the
    reference's loss at the current log-step fraction minus its final loss (reducible loss);
    uniform and token-learnable (whose selection is in the loss weights): equal weights. Rows with
    no mass fall back to uniform.
    """
    step = np.atleast_1d(np.asarray(step, dtype=np.float64))
    n_seq = len(profiles["learn_frac"])
    if strategy in ("uniform", "token-learnable"):
        wts = np.ones((len(step), n_seq))
    elif strategy == "learnable-now":
        hist = np.clip(profiles["learn_hist"], 0, None)
        wts = _box_overlap(log_fraction(step, total_steps), window, hist.shape[1]) @ hist.T
    elif strategy in ("easy-to-hard", "hard-to-easy"):
        q = _rank_quantile(profiles["learn_frac"])
        if strategy == "hard-to-easy":
            q = 1 - q
        # the window slides from [0, window] to [1 - window, 1] over training
        centre = window / 2 + (1 - window) * np.clip(step / max(total_steps - 1, 1), 0, 1)
        wts = (np.abs(q[None, :] - centre[:, None]) <= window / 2).astype(np.float64)
    elif strategy == "loss-based":
        ls, cf = profiles["loss_seq"], profiles["ckpt_frac"]
        t = log_fraction(step, total_steps)
        k = np.clip(np.searchsorted(cf, t) - 1, 0, len(cf) - 2)
        g = np.clip((t - cf[k]) / np.maximum(cf[k + 1] - cf[k], 1e-12), 0, 1)[:, None]
        now = ls[k] * (1 - g) + ls[k + 1] * g
        wts = np.clip(now - ls[-1][None, :], 0, None)
    else:
        raise ConfigError(f"unknown reshape strategy '{strategy}'", f"use one of {', '.join(STRATEGIES)}")
    wts = np.where(np.isfinite(wts), wts, 0) ** sharpness
    tot = wts.sum(axis=1, keepdims=True)
    return np.where(tot > 0, wts / np.where(tot > 0, tot, 1), 1.0 / n_seq)


def build_schedule(profiles: dict, pool: np.ndarray, n_tokens: int, steps: int, batch_size: int,
                   seq_len: int, seed: int, strategy: str, window: float = 0.2, mix: float = 0.5,
                   sharpness: float = 1.0, chunk: int = 256) -> np.ndarray:
    """(steps, batch_size) int64 start offsets. Each slot keeps the default uniform order's offset
    (train.batch_offsets) with probability `mix`, else draws a pool window by sampling_weights.
    `uniform` reproduces batch_offsets exactly."""
    out = np.stack([batch_offsets(seed, s, n_tokens, batch_size, seq_len) for s in range(steps)]) \
        if steps else np.zeros((0, batch_size), dtype=np.int64)
    if strategy == "uniform" or mix >= 1:
        return out.astype(np.int64)
    for s0 in range(0, steps, chunk):
        s_idx = np.arange(s0, min(s0 + chunk, steps))
        p = sampling_weights(profiles, s_idx, steps, strategy, window, sharpness)
        cdf = np.cumsum(p, axis=1)
        for j, s in enumerate(s_idx):
            rng = np.random.default_rng([seed, int(s), 0x5E5])
            take = rng.random(batch_size) >= mix
            draws = np.searchsorted(cdf[j], rng.random(int(take.sum())) * cdf[j, -1], side="right")
            out[s, take] = pool[np.minimum(draws, len(pool) - 1)]
    return out.astype(np.int64)


def pool_draw_counts(offsets: np.ndarray, pool: np.ndarray) -> np.ndarray:
    """How often each pool window appears in a schedule (n_pool,)."""
    flat = offsets.reshape(-1)
    i = np.clip(np.searchsorted(pool, flat), 0, len(pool) - 1)
    return np.bincount(i[pool[i] == flat], minlength=len(pool))


# ----------------------------------------------------------------------------- token weights


def token_events(events: dict, n_tok: int, u_top: float) -> dict[str, np.ndarray]:
    """Each token's positive (learning) events as (n_tok, MAX_EVENTS) arrays: `a` drop (nats, 0 =
    no event), `frac` midpoint and `width` on the log-step fraction ln(step) / ln(steps_ref)."""
    pos = np.asarray(events["a"]) > 0
    tok = np.asarray(events["tok_idx"])[pos].astype(np.int64)
    a = np.asarray(events["a"], dtype=np.float64)[pos]
    frac = np.asarray(events["mu"], dtype=np.float64)[pos] / u_top
    width = np.asarray(events["width"], dtype=np.float64)[pos] / u_top
    out = {k: np.zeros((n_tok, MAX_EVENTS), dtype=np.float32) for k in ("a", "frac", "width")}
    order = np.argsort(tok, kind="stable")
    tok, a, frac, width = tok[order], a[order], frac[order], width[order]
    first = np.searchsorted(tok, tok, side="left")
    slot = np.arange(len(tok)) - first  # 0 for a token's first event, 1 for its second
    keep = slot < MAX_EVENTS
    for k, v in (("a", a), ("frac", frac), ("width", width)):
        out[k][tok[keep], slot[keep]] = v[keep]
    return out


def relevance(ev: dict[str, np.ndarray], idx: np.ndarray, t: np.ndarray, window: float,
              drop_nats: float) -> np.ndarray:
    """In [0, 1], shape of `idx`: how learnable tokens `idx` (pool token indices) are at progress
    `t` (broadcast against idx). Per event: 4 s'((frac - t) / h), 1 at the midpoint, with h the
    event's width but at least window / 2, times min(1, a / drop_nats); the larger of two events."""
    t = np.asarray(t, dtype=np.float32)
    best = np.zeros(idx.shape, dtype=np.float32)
    for e in range(MAX_EVENTS):
        a = ev["a"][idx, e]
        h = np.maximum(ev["width"][idx, e], np.float32(window / 2))
        z = (ev["frac"][idx, e] - t) / h
        r = 4 * logistic_prime(z) * np.minimum(1, a / np.float32(drop_nats))
        best = np.maximum(best, np.where(a > 0, r, 0).astype(np.float32))
    return best


def token_weight(rel: np.ndarray, floor: float) -> np.ndarray:
    """floor + (1 - floor) * relevance: no token weighs 0 unless floor is 0."""
    return np.float32(floor) + np.float32(1 - floor) * rel


def schedule_weights(offsets: np.ndarray, pool: np.ndarray, ev: dict[str, np.ndarray], t_step: np.ndarray,
                     seq_len: int, window: float, floor: float, drop_nats: float,
                     chunk: int = 64) -> np.ndarray:
    """(steps, batch_size, seq_len) float16 loss weights of a schedule. Slots that are pool windows
    get their tokens' weights at the update's progress `t_step` (steps,); the other slots (the
    uniform order's, never scored) weigh the mean of the scored tokens of their batch (1 when the
    batch holds none)."""
    steps, batch = offsets.shape
    out = np.empty((steps, batch, seq_len), dtype=np.float16)
    pos = np.arange(seq_len)
    for s0 in range(0, steps, chunk):
        off = offsets[s0:s0 + chunk]
        i = np.clip(np.searchsorted(pool, off), 0, len(pool) - 1)
        scored = pool[i] == off  # (chunk, batch)
        idx = i[..., None] * seq_len + pos  # (chunk, batch, seq_len) pool token indices
        t = np.asarray(t_step[s0:s0 + chunk], dtype=np.float32)[:, None, None]
        w = token_weight(relevance(ev, idx, t, window, drop_nats), floor)
        n = scored.sum(axis=1) * seq_len
        fill = np.where(n > 0, (w * scored[..., None]).sum(axis=(1, 2)) / np.maximum(n, 1), 1.0)
        out[s0:s0 + chunk] = np.where(scored[..., None], w, fill[:, None, None].astype(np.float32))
    return out


def zero_weight_batches(weights: np.ndarray, chunk: int = 256) -> int:
    """Updates whose weights are all zero (the trainer trains those on uniform weights)."""
    n = 0
    for s0 in range(0, len(weights), chunk):
        w = np.asarray(weights[s0:s0 + chunk], dtype=np.float32).reshape(min(chunk, len(weights) - s0), -1)
        n += int((w.sum(axis=1) <= 0).sum())
    return n


def censored_share(events: dict, u: np.ndarray) -> float:
    """Share of the proxy's learning events (a > 0) whose midpoint lies at or past the middle of its
    last checkpoint interval in ln(step): events the proxy had not finished when it stopped."""
    a, mu = np.asarray(events["a"]), np.asarray(events["mu"])
    pos = a > 0
    if not pos.any():
        return float("nan")
    u = np.asarray(u, dtype=np.float64)
    edge = u[-1] - 0.5 * (u[-1] - u[-2])
    return float((mu[pos] >= edge).mean())
