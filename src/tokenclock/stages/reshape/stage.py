"""The reshape stage: reads a reference run REF (ckpt/, tokens/train.npy), traces a seeded pool of
training windows through its checkpoints (REF/reshape/pool/: trace/loss.npy, trace/offsets.npy,
pool.json), fits learning events, and writes a sampling schedule SCHEDULE/{offsets.npy, meta.json,
profiles.parquet} for a new run (`tokenclock train --set train.data_schedule=SCHEDULE`) with the same
steps and batch size. The arithmetic is in profiles.py; torch, transformers, pyarrow and matplotlib
are imported inside functions, for start-up time.
"""
from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import numpy as np

from tokenclock.artifacts import (
    atomic_path,
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
from tokenclock.stages.reshape.profiles import (
    ReshapeConfig,
    build_schedule,
    pool_draw_counts,
    pool_offsets,
    sequence_profiles,
)
from tokenclock.stages.trace.stage import TraceConfig, trace_series
from tokenclock.stages.train.model import ModelConfig

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
    out: PoolDir = ref.reshape_pool
    sig = {"pool_sum": int(pool.sum()), "pool_size": int(len(pool)), "seq_len": seq_len,
           "steps": [int(s) for s in ckpt_steps]}
    if out.trace_loss.is_file() and out.info.is_file() and read_json(out.info).get("signature") == sig:
        return read_npy(out.trace_loss, mmap=True)
    stream = read_npy(ref.token_stream("train"), mmap=True)
    inputs = np.asarray(stream[pool[:, None] + np.arange(seq_len + 1)[None, :]], dtype=np.int64)
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
        write_json(out.info, {"signature": sig,
                              "offsets_file": out.offsets.relative_to(out.root).as_posix()})
        write_npy(out.offsets, pool)
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
            "ref_ckpt_steps": ckpts, "config": cfg.recorded(),
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
    write_parquet(out.profiles, prof_cols, metadata={"ckpt_frac": profiles["ckpt_frac"].tolist(),
                                                     "ref_ckpt_steps": ckpts})
    write_npy(out.offsets, offsets)
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


# ----------------------------------------------------------------------------- report


def sampled_learning_hist(schedule_dir: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """(pool-average, as-sampled) learning-time histograms (n_bins,) of one schedule, each summing
    to 1: the pool's mean drop by learning time, and the same weighted by how often the schedule
    draws each window (slots outside the pool are counted at the pool's average profile)."""
    prof = load_profiles(schedule_dir)
    meta = read_json(ScheduleDir(schedule_dir).meta)
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
