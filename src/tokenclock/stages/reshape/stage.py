"""The reshape stage: reads a reference run REF (ckpt/, tokens/train.npy), traces a seeded pool of
training windows through its checkpoints (REF/reshape/pool/trace/loss.npy), fits learning events,
and writes a sampling schedule SCHEDULE/{offsets.npy,meta.json,profiles.parquet} for a new run
(`tokenclock train --set train.data_schedule=SCHEDULE`) with the same steps and batch size.

Learning times live on the log-step fraction f = ln(step) / ln(steps_ref) in [0, 1]; the new run's
update s is at t = ln(s + 1) / ln(steps), so a shorter or smaller proxy reference maps onto it.
"""
from __future__ import annotations

import dataclasses
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tokenclock.errors import ConfigError, DataError, RunDirError
from tokenclock.rundir import RunDir
from tokenclock.artifacts import (atomic_path, read_json, read_npy, read_parquet, write_json, write_npy, write_parquet)
from tokenclock.scoring import resolve_device
from tokenclock.stages.fit.stage import FitConfig, fit_matrix
from tokenclock.stages.trace.stage import TraceConfig, trace_series
from tokenclock.stages.train.model import ModelConfig, quiet_transformers
from tokenclock.windows import batch_offsets

STRATEGIES = ("learnable-now", "easy-to-hard", "hard-to-easy", "loss-based", "uniform")
OFFSETS, META, PROFILES = "offsets.npy", "meta.json", "profiles.parquet"  # inside SCHEDULE/
POOL_DIR = "reshape/pool"  # inside REF/: the pool's trace (trace/loss.npy) and pool.json


@dataclass
class ReshapeConfig:
    """How the reference is probed and how the new run's batches are drawn."""

    strategy: str = "learnable-now"  # one of STRATEGIES
    pool_size: int = 1024  # training windows (seq_len + 1 tokens, non-overlapping) traced in REF
    window: float = 0.2  # width of the sampling window: log-step fraction (learnable-now) or
    # rank quantile (easy-to-hard, hard-to-easy)
    mix: float = 0.5  # share of each batch taken from the default uniform order (0 = pool only)
    sharpness: float = 1.0  # pool weights are raised to this power before normalising
    max_ckpts: int = 16  # reference checkpoints traced (log-spaced subset, last one included)
    n_bins: int = 32  # bins of each sequence's learning-time histogram
    seed: int = -1  # schedule seed (-1 = the new run's train seed = the reference's seed)
    steps: int = 0  # new run's train.steps (0 = the reference's)
    batch_size: int = 0  # new run's train.batch_size (0 = the reference's)
    seq_len: int = 0  # new run's train.seq_len (0 = the reference's)
    trace_batch_size: int = 32  # pool sequences per forward pass
    device: str = "auto"

    def __post_init__(self) -> None:
        if self.strategy not in STRATEGIES:
            raise ConfigError(f"unknown reshape strategy '{self.strategy}'", f"use one of {', '.join(STRATEGIES)}")
        if not 0 <= self.mix <= 1:
            raise ConfigError(f"reshape mix must be in [0, 1], got {self.mix}")
        if not 0 < self.window <= 1:
            raise ConfigError(f"reshape window must be in (0, 1], got {self.window}")
        if self.sharpness <= 0 or self.pool_size < 1 or self.max_ckpts < 4 or self.n_bins < 2:
            raise ConfigError("reshape needs sharpness > 0, pool_size >= 1, max_ckpts >= 4, n_bins >= 2")
        if min(self.steps, self.batch_size, self.seq_len) < 0 or self.trace_batch_size < 1:
            raise ConfigError("reshape steps, batch_size, seq_len must be >= 0 (0 = the reference's) "
                              "and trace_batch_size >= 1")


# ----------------------------------------------------------------------------- pure functions


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
    the last checkpoint), `loss_last`, and `loss_seq` (K', n_seq) / `ckpt_frac` (K',) for loss-based.
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
    remaining = np.bincount(seq, a / (1 + np.exp(-(mu - u_top) / w)), minlength=n_seq) / seq_len
    loss_seq = loss.reshape(K, n_seq, seq_len).mean(axis=2)
    return {"learn_frac": learn_frac, "learn_hist": hist, "drop_nats": amp / seq_len,
            "remaining_nats": remaining, "loss_last": loss_seq[-1].astype(np.float64),
            "loss_seq": loss_seq.astype(np.float64), "ckpt_frac": u / u_top}


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
    uniform: equal weights. Rows with no mass fall back to uniform.
    """
    step = np.atleast_1d(np.asarray(step, dtype=np.float64))
    n_seq = len(profiles["learn_frac"])
    if strategy == "uniform":
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


# ----------------------------------------------------------------------------- the stage


def _reference(ref: RunDir) -> dict:
    steps = ref.ckpt_steps()
    if not steps:
        raise RunDirError(f"{ref.ckpt_dir} holds no checkpoints",
                          f"train the reference first: tokenclock train --config CONFIG --out {ref.root}")
    if not ref.manifest.is_file() or not ref.token_stream("train").is_file():
        raise RunDirError(f"{ref.root} is not a tokenclock run (no manifest.json or tokens/train.npy)",
                          "pass the directory given to `tokenclock train --out`")
    conf = read_json(ref.manifest)["stages"].get("train", {}).get("config")
    if conf is None:
        raise RunDirError(f"{ref.manifest} has no train stage", "train the reference run first")
    if len([s for s in steps if s > 0]) < 4:
        raise DataError(f"{ref.root} has {len(steps)} checkpoints; reshape needs at least 4 after step 0",
                        "train the reference longer or with more train.ckpt_per_decade")
    return conf


def _subset(steps: list[int], n: int) -> list[int]:
    """At most n checkpoints with step > 0, log-spaced, always keeping the last."""
    pos = [s for s in steps if s > 0]
    if len(pos) <= n:
        return pos
    idx = np.unique(np.round(np.geomspace(1, len(pos), n)).astype(int) - 1)
    return [pos[i] for i in idx]


def trace_pool(ref: RunDir, pool: np.ndarray, seq_len: int, ckpt_steps: list[int], cfg: ReshapeConfig,
               progress: bool = True) -> np.ndarray:
    """(K, pool_size * seq_len) float32 losses of the pool windows at `ckpt_steps` of REF, kept in
    REF/reshape/pool/ (reused when pool and checkpoints match; resumable per checkpoint)."""
    import torch
    from transformers import AutoModelForCausalLM

    quiet_transformers()
    out = RunDir(ref.root / POOL_DIR)
    sig = {"pool_sum": int(pool.sum()), "pool_size": int(len(pool)), "seq_len": seq_len,
           "steps": [int(s) for s in ckpt_steps]}
    info = out.root / "pool.json"
    if out.trace_loss.is_file() and info.is_file() and read_json(info).get("signature") == sig:
        return read_npy(out.trace_loss, mmap=True)
    stream = read_npy(ref.token_stream("train"), mmap=True)
    inputs = np.asarray(stream[pool[:, None] + np.arange(seq_len + 1)[None, :]], dtype=np.int64)
    tcfg = TraceConfig(n_seqs=len(pool), seq_len=seq_len, batch_size=cfg.trace_batch_size, dtype="fp32")
    if out.trace_loss.is_file():
        out.trace_loss.unlink()

    def loader(step):
        return lambda: AutoModelForCausalLM.from_pretrained(ref.ckpt(step), dtype=torch.float32)

    loss = trace_series(out, [({"step": s}, loader(s)) for s in ckpt_steps], inputs, tcfg,
                        resolve_device(cfg.device), progress=progress, signature=sig)
    write_json(info, {"signature": sig, "offsets_file": "trace/offsets.npy"})
    write_npy(out.trace_dir / "offsets.npy", pool)
    return loss


def compute_params(model_conf: dict, vocab_size: int) -> int:
    """Parameters a token's forward pass multiplies by (non-embedding + output head), from the
    model section of a manifest; the cost model is 6 x params per training token, 2 x per traced one."""
    m = ModelConfig(**{k: v for k, v in model_conf.items() if k in {f.name for f in dataclasses.fields(ModelConfig)}})
    h, L, inter = m.hidden_size, m.num_layers, m.intermediate_size
    kv = h // m.num_heads * m.num_kv_heads
    per_layer = h * h * 2 + h * kv * 2 + 3 * h * inter + 2 * h
    return L * per_layer + h + vocab_size * h


def reshape(ref_dir: str | Path, out_dir: str | Path, cfg: ReshapeConfig | None = None, *,
            progress: bool = True) -> dict:
    """Write SCHEDULE/offsets.npy (steps, batch_size), profiles.parquet and meta.json from REF."""
    cfg = cfg or ReshapeConfig()
    t0 = time.time()
    ref, out = RunDir(ref_dir), Path(out_dir)
    conf = _reference(ref)
    tconf = conf["train"]
    steps = cfg.steps or tconf["steps"]
    batch_size = cfg.batch_size or tconf["batch_size"]
    seq_len = cfg.seq_len or tconf["seq_len"]
    seed = cfg.seed if cfg.seed >= 0 else conf.get("seed", 0)
    stream = read_npy(ref.token_stream("train"), mmap=True)
    n_tokens = len(stream)
    if n_tokens < seq_len + 2:
        raise ConfigError(f"the training stream has {n_tokens} tokens, fewer than one window of {seq_len + 1}")
    pool = pool_offsets(conf.get("seed", 0), n_tokens, cfg.pool_size, seq_len)
    ckpts = _subset(ref.ckpt_steps(), cfg.max_ckpts)
    # profiles are computed for every strategy, `uniform` included: the report compares them
    loss = trace_pool(ref, pool, seq_len, ckpts, cfg, progress)
    profiles = sequence_profiles(loss, np.asarray(ckpts), seq_len, FitConfig(extra_axes=[]),
                                 cfg.n_bins, progress=progress)
    offsets = build_schedule(profiles, pool, n_tokens, steps, batch_size, seq_len, seed, cfg.strategy,
                             cfg.window, cfg.mix, cfg.sharpness)
    counts = pool_draw_counts(offsets, pool)
    vocab = read_json(ref.tokens_meta)["vocab_size"] if ref.tokens_meta.is_file() else 0
    ref_params = compute_params(conf["model"], vocab)
    ref_tokens = int(max(ref.ckpt_steps())) * tconf["batch_size"] * tconf["seq_len"]
    trace_tokens = len(ckpts) * len(pool) * seq_len
    meta = {"strategy": cfg.strategy, "reference": str(ref.root), "steps": steps, "batch_size": batch_size,
            "seq_len": seq_len, "seed": seed, "n_tokens": n_tokens, "pool_size": len(pool),
            "ref_ckpt_steps": ckpts, "config": dataclasses.asdict(cfg),
            "pool_share_of_slots": float(counts.sum() / offsets.size),
            "pool_sequences_drawn": int((counts > 0).sum()),
            "cost": {"ref_params": ref_params, "ref_train_tokens": ref_tokens,
                     "pool_trace_tokens": trace_tokens,
                     "ref_flops": 6.0 * ref_params * ref_tokens + 2.0 * ref_params * trace_tokens},
            "seconds": round(time.time() - t0, 3)}
    prof_cols = {"sequence": np.arange(len(pool), dtype=np.int32), "offset": pool,
                 "learn_frac": profiles["learn_frac"], "drop_nats": profiles["drop_nats"],
                 "remaining_nats": profiles["remaining_nats"], "loss_last": profiles["loss_last"],
                 "draws": counts.astype(np.int64)}
    for b in range(profiles["learn_hist"].shape[1]):
        prof_cols[f"hist_{b:02d}"] = profiles["learn_hist"][:, b]  # mean drop/token by learning time
    for k in range(len(ckpts)):
        prof_cols[f"loss_k{k:02d}"] = profiles["loss_seq"][k]  # mean loss at ref_ckpt_steps[k]
    write_parquet(out / PROFILES, prof_cols, metadata={"ckpt_frac": profiles["ckpt_frac"].tolist(),
                                                       "ref_ckpt_steps": ckpts})
    write_npy(out / OFFSETS, offsets)
    write_json(out / META, meta)
    return meta


def load_profiles(schedule_dir: str | Path) -> dict[str, np.ndarray]:
    """Profiles of SCHEDULE/profiles.parquet in the form sampling_weights takes."""
    import pyarrow.parquet as pq

    path = Path(schedule_dir) / PROFILES
    cols = read_parquet(path)
    md = json.loads(pq.read_schema(path).metadata[b"tokenclock"])
    hist = np.stack([cols[k] for k in sorted(c for c in cols if c.startswith("hist_"))], axis=1)
    loss_seq = np.stack([cols[k] for k in sorted(c for c in cols if c.startswith("loss_k"))], axis=0)
    return {**{k: v for k, v in cols.items() if not k.startswith(("hist_", "loss_k"))},
            "learn_hist": hist, "loss_seq": loss_seq, "ckpt_frac": np.asarray(md["ckpt_frac"])}


# ----------------------------------------------------------------------------- report


def sampled_learning_hist(schedule_dir: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """(pool-average, as-sampled) learning-time histograms (n_bins,) of one schedule, each summing
    to 1: the pool's mean drop by learning time, and the same weighted by how often the schedule
    draws each window (slots outside the pool are counted at the pool's average profile)."""
    prof = load_profiles(schedule_dir)
    meta = read_json(Path(schedule_dir) / META)
    hist, draws = np.clip(prof["learn_hist"], 0, None), prof["draws"].astype(np.float64)
    before = hist.mean(axis=0)
    other = meta["steps"] * meta["batch_size"] - draws.sum()
    after = draws @ hist + other * before
    return before / max(before.sum(), 1e-12), after / max(after.sum(), 1e-12)


def reshape_report(bench_dir: str | Path) -> Path:
    """BENCH/report/index.html + PNGs: validation loss of each arm (mean over seeds, min-max band)
    and the learning-time histogram each schedule feeds the model, from results.json and
    schedules/*/ (written by benchmarks/reshape_bench.py)."""
    import html

    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure


    bench = Path(bench_dir)
    res = read_json(bench / "results.json")
    arms = list(dict.fromkeys(k.split("|")[0] for k in res["curves"]))
    out = bench / "report"
    out.mkdir(parents=True, exist_ok=True)

    fig = Figure(figsize=(11, 4.2), dpi=110, layout="constrained")
    FigureCanvasAgg(fig)
    ax1, ax2 = fig.subplots(1, 2)
    for arm in arms:
        curves = [v for k, v in res["curves"].items() if k.split("|")[0] == arm]
        step = np.asarray(curves[0]["step"], dtype=float)
        vals = np.array([c["val_loss"] for c in curves if len(c["val_loss"]) == len(step)])
        ok = step > 0
        line, = ax1.plot(step[ok], vals.mean(0)[ok], label=f"{arm} (n={len(vals)})",
                         lw=2.2 if arm in ("uniform", "learnable-now") else 1.2)
        ax1.fill_between(step[ok], vals.min(0)[ok], vals.max(0)[ok], color=line.get_color(), alpha=0.15)
        sched = sorted((bench / "schedules").glob(f"{arm}-s*"))
        if sched:
            before, after = sampled_learning_hist(sched[0])
            x = (np.arange(len(after)) + 0.5) / len(after)
            if arm == "uniform":
                ax2.step(x, before, where="mid", color="k", lw=2, label="uniform (pool average)")
            else:
                ax2.step(x, after, where="mid", color=line.get_color(), label=arm)
    ax1.set(xscale="log", xlabel="step", ylabel="validation loss (nats)", title="validation loss per arm")
    lo = min(min(v["val_loss"][-1] for v in res["curves"].values()), 1e9)
    ax1.set_ylim(lo - 0.05, lo + 1.5)
    ax1.legend(fontsize=8)
    ax2.set(xlabel="learning time (log-step fraction of the reference)", ylabel="share of loss drop sampled",
            title="learning-time histogram fed to the model")
    ax2.legend(fontsize=8)
    with atomic_path(out / "reshape.png") as tmp:
        fig.savefig(tmp, format="png")

    rows = []
    for arm, s in res["summary"].items():
        cells = "".join(f"<td>{s[k]['mean']:+.1%} &plusmn; {s[k]['sd'] if s[k]['sd'] == s[k]['sd'] else 0:.1%}"
                        f"{' (' + str(s[k]['not_reached']) + ' never)' if s[k]['not_reached'] else ''}</td>"
                        for k in ("0.25", "0.5", "0.75", "1.0", "cost"))
        rows.append(f"<tr><td>{html.escape(arm)}</td>{cells}<td>{s['final_val_delta']['mean']:+.4f}</td></tr>")
    a = res["args"]
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>tokenclock reshape</title>
<style>body{{font-family:sans-serif;max-width:1100px;margin:2em auto}}td,th{{padding:3px 10px;text-align:right}}</style>
</head><body><h1>Reshaped vs uniform training at matched tokens</h1>
<p>{len(a['seeds'])} seeds; {a['preset']}, {a['steps']} steps x {a['batch']} x {a['seq_len']} tokens per arm;
proxy reference: hidden {a['ref_hidden']}, {a['ref_steps']} steps, pool {a['pool_size']} windows,
window {a['window']}, mix {a['mix']}, sharpness {a['sharpness']}. Reference cost:
<b>{res['ref_cost_share']:.1%}</b> of one run's compute (tokens x params).</p>
<img src="reshape.png" alt="reshape.png" style="max-width:100%">
<table><tr><th>arm</th><th>speed-up at L*@25%</th><th>@50%</th><th>@75%</th><th>@100%</th>
<th>@100% incl. reference</th><th>final val delta (nats)</th></tr>{''.join(rows)}</table>
<p>speed-up = 1 - steps_arm(L*) / steps_uniform(L*) on each seed's own validation set, mean &plusmn; sd over
seeds; "never" = the arm did not reach L* within its steps. From results.json
(<code>python benchmarks/reshape_bench.py --out {html.escape(str(bench))}</code>).</p></body></html>
"""
    with atomic_path(out / "index.html") as tmp:
        tmp.write_text(page)
    return out / "index.html"
