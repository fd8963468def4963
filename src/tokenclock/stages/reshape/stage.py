"""The reshape stage: reads a reference run REF (ckpt/, tokens/train.npy), traces a seeded pool of
training windows through its checkpoints (REF/reshape/pool/: trace/loss.npy, trace/offsets.npy,
pool.json), fits learning events, and writes a sampling schedule SCHEDULE/{offsets.npy, meta.json,
profiles.parquet} (and weights.npy, per-token loss weights, for token-learnable) for a new run
(`tokenclock train --set train.data_schedule=SCHEDULE`) with the same steps, batch size, seq_len and
tokenizer. The arithmetic is in profiles.py (the benchmark's report: benchmarks/reshape_report.py); torch,
transformers and pyarrow are imported inside functions, for start-up time.
"""
from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import numpy as np

from tokenclock.artifacts import (
    file_sha256,
    read_json,
    read_npy,
    read_parquet,
    write_json,
    write_npy,
    write_parquet,
)
from tokenclock.errors import ConfigError, DataError, RunDirError
from tokenclock.forward import quiet_transformers, resolve_device
from tokenclock.rundir import PoolDir, RunDir, ScheduleDir
from tokenclock.stages.fit.config import FitConfig
from tokenclock.stages.reshape.config import TOKEN_STRATEGIES, ReshapeConfig
from tokenclock.stages.reshape.profiles import (
    build_schedule,
    censored_share,
    log_fraction,
    pool_draw_counts,
    pool_offsets,
    schedule_weights,
    sequence_profiles,
    token_events,
    zero_weight_batches,
)
from tokenclock.stages.trace.config import TraceConfig
from tokenclock.stages.trace.stage import trace_series
from tokenclock.stages.train.config import ModelConfig
from tokenclock.windows import gather

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
    """At most n checkpoints with step > 0, evenly spaced in ln(step): the nearest checkpoint to
    each of n log-spaced targets from the first to the last (both kept). Spacing the checkpoints'
    indices instead would space a log-spaced series twice and leave its last decade empty."""
    pos = [s for s in steps if s > 0]
    if len(pos) <= n:
        return pos
    logs = np.log(pos)
    targets = np.linspace(logs[0], logs[-1], n)
    idx = np.unique(np.abs(logs[None, :] - targets[:, None]).argmin(axis=1))
    return [pos[i] for i in idx]


def trace_pool(ref: RunDir, pool: np.ndarray, seq_len: int, ckpt_steps: list[int], cfg: ReshapeConfig,
               progress: bool = True) -> np.ndarray:
    """(K, pool_size * seq_len) float32 losses of the pool windows at `ckpt_steps` of REF, kept in
    REF/reshape/pool/ (reused when pool and checkpoints match; resumable per checkpoint)."""
    import torch
    from transformers import AutoModelForCausalLM

    quiet_transformers()
    out: PoolDir = ref.reshape_pool
    sig = {"pool_sum": int(pool.sum()), "pool_size": int(len(pool)), "seq_len": seq_len,
           "steps": [int(s) for s in ckpt_steps]}
    if out.trace_loss.is_file() and out.info.is_file() and read_json(out.info).get("signature") == sig:
        return read_npy(out.trace_loss, mmap=True)
    t0 = time.time()
    stream = read_npy(ref.token_stream("train"), mmap=True)
    inputs = gather(stream, pool, seq_len)
    tcfg = TraceConfig(n_seqs=len(pool), seq_len=seq_len, batch_size=cfg.trace_batch_size, dtype="fp32",
                       device=cfg.device)

    def loader(step):
        return lambda: AutoModelForCausalLM.from_pretrained(ref.ckpt(step), dtype=torch.float32)

    # the pool is run-like: its trace takes REF/reshape/pool/.lock and is recorded in its manifest
    with out.stage("trace", dataclasses.asdict(tcfg), inputs=sig):
        if out.trace_loss.is_file():
            out.trace_loss.unlink()
        loss = trace_series(out, [({"step": s}, loader(s)) for s in ckpt_steps], inputs, tcfg,
                            resolve_device(cfg.device), progress=progress, signature=sig)
        write_json(out.info, {"signature": sig, "seconds": round(time.time() - t0, 3),
                              "offsets_file": out.offsets.relative_to(out.root).as_posix()})
        write_npy(out.offsets, pool)
    return loss


_SCORED: dict = {}  # one scoring pass (the pool's fit) per pool trace and process: every arm shares it


def score_pool(ref: RunDir, loss: np.ndarray, ckpts: list[int], seq_len: int, cfg: ReshapeConfig,
               progress: bool) -> tuple[dict, float]:
    """(sequence_profiles of the pool trace, seconds its fit took): fitted once per process for a
    pool trace, and reused by every strategy (sequence- and token-level arms score alike)."""
    trace = ref.reshape_pool.trace_loss
    key = (str(trace.resolve()), trace.stat().st_mtime_ns, json.dumps(read_json(ref.reshape_pool.info)["signature"]),
           cfg.n_bins)  # a re-traced pool (new mtime) is fitted again
    if key not in _SCORED:
        t0 = time.time()
        prof = sequence_profiles(loss, np.asarray(ckpts), seq_len, FitConfig(extra_axes=[]), cfg.n_bins,
                                 progress=progress)
        _SCORED.clear()
        _SCORED[key] = (prof, time.time() - t0)
    return _SCORED[key]


def tokenizer_sha256(run: RunDir) -> str | None:
    """sha256 of RUN/tokens/tokenizer.json (a schedule's offsets only mean something under it)."""
    return file_sha256(run.tokenizer) if run.tokenizer.is_file() else None


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
    ref, out = RunDir(ref_dir), ScheduleDir(out_dir)
    conf = _reference(ref)
    tconf = conf["train"]
    steps = cfg.steps or tconf["steps"]
    batch_size = cfg.batch_size or tconf["batch_size"]
    seq_len = cfg.seq_len or tconf["seq_len"]
    seed = conf.get("seed", 0) if cfg.seed is None else cfg.seed
    stream = read_npy(ref.token_stream("train"), mmap=True)
    n_tokens = len(stream)
    if n_tokens < seq_len + 2:
        raise ConfigError(f"the training stream has {n_tokens} tokens, fewer than one window of {seq_len + 1}")
    pool = pool_offsets(conf.get("seed", 0), n_tokens, cfg.pool_size, seq_len)
    ckpts = _subset(ref.ckpt_steps(), cfg.max_ckpts)
    # profiles are computed for every strategy, `uniform` included: the report compares them
    loss = trace_pool(ref, pool, seq_len, ckpts, cfg, progress)
    profiles, fit_seconds = score_pool(ref, loss, ckpts, seq_len, cfg, progress)
    offsets = build_schedule(profiles, pool, n_tokens, steps, batch_size, seq_len, seed, cfg.strategy,
                             cfg.window, cfg.mix, cfg.sharpness)
    counts = pool_draw_counts(offsets, pool)
    weights = None
    if cfg.strategy in TOKEN_STRATEGIES:
        ev = token_events(profiles["events"], len(pool) * seq_len, float(profiles["u"][-1]))
        weights = schedule_weights(offsets, pool, ev, log_fraction(np.arange(steps), steps), seq_len,
                                   cfg.window, cfg.token_floor, cfg.token_drop_nats)
    vocab = read_json(ref.tokens_meta)["vocab_size"] if ref.tokens_meta.is_file() else 0
    ref_params = compute_params(conf["model"], vocab)
    ref_tokens = int(max(ref.ckpt_steps())) * tconf["batch_size"] * tconf["seq_len"]
    trace_tokens = len(ckpts) * len(pool) * seq_len
    meta = {"strategy": cfg.strategy, "reference": str(ref.root), "steps": steps, "batch_size": batch_size,
            "seq_len": seq_len, "seed": seed, "n_tokens": n_tokens, "pool_size": len(pool),
            "ref_ckpt_steps": ckpts, "config": cfg.recorded(),
            "pool_share_of_slots": float(counts.sum() / offsets.size),
            "pool_sequences_drawn": int((counts > 0).sum()),
            # repetition: draws of one pool window against what the uniform order gives one token
            "pool_repetition": {"max_draws": int(counts.max(initial=0)),
                                "mean_draws": float(counts[counts > 0].mean()) if (counts > 0).any() else 0.0,
                                "uniform_draws_per_token": steps * batch_size * seq_len / n_tokens},
            "tokenizer_sha256": tokenizer_sha256(ref),
            # the proxy's events not finished at its last checkpoint (a proxy that stopped too early)
            "proxy_censored_share": censored_share(profiles["events"], profiles["u"]),
            "scoring_seconds": {"pool_trace": read_json(ref.reshape_pool.info).get("seconds"),
                                "pool_fit": round(fit_seconds, 3)},
            "token_weights": None if weights is None else {
                "floor": cfg.token_floor, "mean": float(np.mean(weights, dtype=np.float64)),
                "zero_weight_batches": zero_weight_batches(weights)},
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
    write_parquet(out.profiles, prof_cols, metadata={"ckpt_frac": profiles["ckpt_frac"].tolist(),
                                                     "ref_ckpt_steps": ckpts})
    write_npy(out.offsets, offsets)
    if weights is not None:
        write_npy(out.loss_weights, weights)
    elif out.loss_weights.is_file():  # a token-level schedule rewritten by a sequence-level one
        out.loss_weights.unlink()
    write_json(out.meta, meta)
    return meta


def load_profiles(schedule_dir: str | Path) -> dict[str, np.ndarray]:
    """Profiles of SCHEDULE/profiles.parquet in the form sampling_weights takes."""
    import pyarrow.parquet as pq

    path = ScheduleDir(schedule_dir).profiles
    cols = read_parquet(path)
    md = json.loads(pq.read_schema(path).metadata[b"tokenclock"])
    hist = np.stack([cols[k] for k in sorted(c for c in cols if c.startswith("hist_"))], axis=1)
    loss_seq = np.stack([cols[k] for k in sorted(c for c in cols if c.startswith("loss_k"))], axis=0)
    return {**{k: v for k, v in cols.items() if not k.startswith(("hist_", "loss_k"))},
            "learn_hist": hist, "loss_seq": loss_seq, "ckpt_frac": np.asarray(md["ckpt_frac"])}
