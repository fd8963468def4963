"""The trace stage: reads RUN/ckpt/ (every checkpoint) and RUN/tokens/val.npy, and writes the
per-token loss matrix RUN/trace/loss.npy float32 (n_ckpt, n_tok) in nats, the axis values
RUN/trace/axis.parquet, the token table RUN/trace/tokens.parquet and RUN/trace/meta.json.

Resumable per checkpoint: rows are filled in a memmap under a temporary name, progress.json
says which are final, and loss.npy appears only when every row is done. Rows a finished trace
already holds are kept: a run whose ckpt/ gained checkpoints (a replay zoom) traces only those,
merged into loss.npy and axis.parquet in step order. torch, transformers and
tqdm are imported inside functions, for start-up time.
"""
from __future__ import annotations

import dataclasses
import json
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from tokenclock import dist
from tokenclock.artifacts import read_json, read_npy, read_parquet, write_json, write_npy, write_parquet
from tokenclock.errors import ConfigError, DataError, RunDirError
from tokenclock.forward import quiet_transformers, resolve_device, token_losses, trace_dtype
from tokenclock.rundir import AVG, RAW, RunDir
from tokenclock.stages.tokens.tokenizer import load_tokenizer
from tokenclock.stages.trace import resume
from tokenclock.stages.trace.config import TraceConfig
from tokenclock.stages.trace.sanity import axis_warnings
from tokenclock.windows import val_windows

MIN_CHECKPOINTS = 4




def token_table(tok, inputs: np.ndarray, counts: np.ndarray | None, context_tokens: int) -> dict:
    """One row per traced token: inputs (n_seqs, seq_len + 1); token j+1 is predicted from 0..j."""
    n_seqs, width = inputs.shape
    seq_len = width - 1
    targets = inputs[:, 1:].reshape(-1)
    vocab = tok.get_vocab_size()
    id_text = [tok.decode([i], skip_special_tokens=False) for i in range(vocab)]
    contexts = []
    for s in range(n_seqs):
        row = inputs[s]
        for p in range(1, seq_len + 1):
            ctx = tok.decode(row[max(0, p - context_tokens):p].tolist(), skip_special_tokens=False)
            contexts.append(ctx[-48:])
    table = {
        "tok_idx": np.arange(n_seqs * seq_len, dtype=np.int64),
        "sequence": np.repeat(np.arange(n_seqs, dtype=np.int32), seq_len),
        "position": np.tile(np.arange(1, seq_len + 1, dtype=np.int32), n_seqs),
        "token_id": targets.astype(np.int32),
        "token_text": [id_text[i] for i in targets],
        "context": contexts,
    }
    if counts is not None:
        total = counts.sum() + len(counts)
        table["train_count"] = counts[targets].astype(np.int64)
        table["unigram_loss"] = -np.log((counts[targets] + 1.0) / total)
    return table


def trace_series(out: RunDir, loaders: Sequence[tuple[dict, Callable]], inputs: np.ndarray,
                 cfg: TraceConfig, device: str, *, progress: bool = True, signature: dict | None = None) -> np.ndarray:
    """Fill out/trace/loss.npy row by row: loaders[k] = (axis row, () -> model) in axis order.

    Resumes from out/trace/progress.json when the signature (inputs and axis) matches. A finished
    loss.npy whose trace had the same settings gives every row whose axis row it holds: a series
    that gained checkpoints (a replay zoom) computes only the new rows, merged in axis order, and an
    unchanged one computes nothing.
    """
    import torch
    from tqdm.auto import tqdm

    d = dist.current()  # under torchrun: rank r scores sequences r, r + world, ...; rank 0 writes
    n_ckpt, n_tok = len(loaders), inputs.shape[0] * (inputs.shape[1] - 1)
    partial = out.trace_partial
    sig = {"n_ckpt": n_ckpt, "n_tok": n_tok, "axis": [row for row, _ in loaders],
           "inputs_sum": int(inputs.astype(np.int64).sum()), **(signature or {})}
    done, prog = dist.run_on_main(lambda: _open_partial(out, sig))
    if done is None:
        return read_npy(out.trace_loss, mmap=True)
    have = set(done)
    todo = [k for k in range(n_ckpt) if k not in have]
    mm = np.lib.format.open_memmap(partial, mode="r+") if d.main else None
    amp = trace_dtype(cfg.dtype, device)
    tokens_all = torch.from_numpy(inputs.astype(np.int64))[d.rank::d.world]
    def score(model) -> np.ndarray:  # (n_tok,) nats, gathered from every rank
        return score_windows(model.to(device).eval(), tokens_all, inputs.shape[0], cfg.batch_size, amp, device, d)

    what = resume.changed(prog.get("versions"), resume.trace_versions()) if done and todo else []
    if what:  # rows on disk from other torch/transformers versions: one must reproduce before appending
        k = min(done)
        again = score(loaders[k][1]())
        if d.main:
            rec = resume.check_row(loaders[k][0], mm[k], again, "fp32" if amp is None else "bf16", what)
            prog["version_checks"] = [*prog.get("version_checks", []), rec]
    prog["versions"] = prog.get("versions") or resume.trace_versions()  # those of the first rows traced
    bar = tqdm(total=n_ckpt * n_tok, initial=len(done) * n_tok, unit="tok", unit_scale=True, desc="trace",
               disable=not (progress and d.main), dynamic_ncols=True)
    # the next checkpoint loads from disk in a thread while this one is scored (loading a large
    # checkpoint takes about as long as scoring it on a GPU)
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tokenclock-load") if cfg.prefetch else None
    upcoming = None
    try:
        for i, k in enumerate(todo):
            row, load = loaders[k]
            model = upcoming.result() if upcoming is not None else load()
            nxt = todo[i + 1] if i + 1 < len(todo) else None
            upcoming = pool.submit(loaders[nxt][1]) if pool is not None and nxt is not None else None
            flat = score(model)
            del model
            if not np.isfinite(flat).all():
                bad = int((~np.isfinite(flat)).sum())
                raise DataError(f"checkpoint {row} gives {bad} non-finite token losses",
                                "the checkpoint is corrupt or diverged; retrain or drop it")
            if d.main:
                mm[k] = flat
                mm.flush()
                done.append(k)
                _write_progress(out, prog, sig, sorted(done))
            bar.update(n_tok)
        bar.close()
    finally:
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)

    if mm is not None:
        mm.flush()
        del mm

    def finish():
        # progress.json keeps the signature of the finished loss.npy ("final"): while loss.partial.npy
        # exists, loss.npy is still the previous trace; once it is gone, loss.npy is this one
        _fsync(partial)
        os.replace(partial, out.trace_loss)
        _write_progress(out, {"final": sig, "versions": prog.get("versions"),
                              "version_checks": prog.get("version_checks", [])}, sig, list(range(n_ckpt)))

    dist.run_on_main(finish)
    return read_npy(out.trace_loss, mmap=True)


def score_windows(model, tokens_local, n_seqs: int, batch_size: int, amp, device: str, d: dist.Dist) -> np.ndarray:
    """Per-token losses (n_seqs * seq_len,) float32 of all windows, on every rank: this rank scores
    `tokens_local` (its windows r, r + world, ...: (n_local, seq_len + 1)) in batches of
    `batch_size`, and the ranks' rows are gathered in window order."""
    import torch

    parts = [token_losses(model, tokens_local[b:b + batch_size], amp, device).float()
             for b in range(0, len(tokens_local), batch_size)]
    local = torch.cat(parts) if parts else torch.zeros((0, tokens_local.shape[1] - 1), device=device)
    return dist.gather_rows(local, n_seqs, d).cpu().numpy().reshape(-1)


def _open_partial(out: RunDir, sig: dict) -> tuple[list[int] | None, dict]:
    """(the rows of loss.partial.npy already final, the progress record): resumed from the
    partial, or copied from a finished loss.npy of the same settings; None when loss.npy is this
    trace already."""
    partial, n_ckpt, n_tok = out.trace_partial, sig["n_ckpt"], sig["n_tok"]
    prog = read_json(out.trace_progress) if out.trace_progress.is_file() else {}
    final = _final_signature(prog, partial.is_file())
    if partial.is_file() and prog.get("signature") == sig:
        return sorted(_rows_done(prog)), prog
    reuse = _reusable_rows(out, final, sig)
    if len(reuse) == n_ckpt == len(final["axis"]) and all(k == j for k, j in reuse.items()):
        return None, prog  # loss.npy holds exactly these rows
    out.trace_dir.mkdir(parents=True, exist_ok=True)
    mm = np.lib.format.open_memmap(partial, mode="w+", dtype=np.float32, shape=(n_ckpt, n_tok))
    if reuse:
        old = read_npy(out.trace_loss, mmap=True)
        for k, j in reuse.items():
            mm[k] = old[j]
        del old
    mm.flush()
    del mm
    _fsync(partial)
    prog = {"final": final, "versions": prog.get("versions") if reuse else None}  # the reused rows' versions
    _write_progress(out, prog, sig, sorted(reuse))
    return sorted(reuse), prog


def _rows_done(prog: dict) -> set[int]:
    """Rows of loss.partial.npy that are final (runs traced before 0.3 wrote a prefix count)."""
    return set(prog["done"]) if "done" in prog else set(range(int(prog.get("rows_done", 0))))


def _final_signature(prog: dict, partial_exists: bool) -> dict | None:
    """The signature of the trace loss.npy holds: the partial's own once it is complete and gone
    (renamed to loss.npy), else the recorded "final" one (None: unknown)."""
    sig = prog.get("signature")
    if sig and not partial_exists and len(_rows_done(prog)) == int(sig.get("n_ckpt", -1)):
        return sig
    return prog.get("final")


def _reusable_rows(out: RunDir, final: dict | None, sig: dict) -> dict[int, int]:
    """{row of the new trace: row of loss.npy} for the axis rows a finished loss.npy of the same
    trace settings (everything but the axis) already holds."""
    if not final or not out.trace_loss.is_file():
        return {}
    settings = {k: v for k, v in sig.items() if k not in ("n_ckpt", "axis")}
    if {k: v for k, v in final.items() if k not in ("n_ckpt", "axis")} != settings:
        return {}
    shape = read_npy(out.trace_loss, mmap=True).shape
    if shape != (len(final["axis"]), sig["n_tok"]):
        return {}
    old = {_row_key(row): j for j, row in enumerate(final["axis"])}
    keys = (_row_key(row) for row in sig["axis"])
    return {k: old[key] for k, key in enumerate(keys) if key in old}


def _row_key(row: dict) -> str:
    """An axis row as text, equal for the row and its JSON copy (NaN included)."""
    return json.dumps(row, sort_keys=True, default=lambda o: o.item() if hasattr(o, "item") else str(o))


def _write_progress(out: RunDir, prog: dict, sig: dict, done: list[int]) -> None:
    write_json(out.trace_progress, {"signature": sig, "rows_done": len(done), "done": done,
                                    "final": prog.get("final"), "versions": prog.get("versions") or
                                    resume.trace_versions(), "version_checks": prog.get("version_checks", [])})


def _fsync(path: Path) -> None:
    with open(path, "rb") as fh:
        os.fsync(fh.fileno())


def _axis_rows(run: RunDir, steps: list[int]) -> list[dict]:
    if run.ckpt_index.is_file():
        idx = read_parquet(run.ckpt_index)
        by_step = {int(s): i for i, s in enumerate(idx["step"])}
    else:
        idx, by_step = {}, {}
    rows = []
    for s in steps:
        if s in by_step:
            i = by_step[s]
            rows.append({"step": s, "tokens_seen": int(idx["tokens_seen"][i]), "cum_lr": float(idx["cum_lr"][i]),
                         "val_loss": float(idx["val_loss"][i])})
        else:
            side = run.ckpt_sidecar(s)
            m = read_json(side) if side.is_file() else {}
            rows.append({"step": s, "tokens_seen": int(m.get("tokens_seen", 0)),
                         "cum_lr": float(m.get("cum_lr", float("nan"))), "val_loss": float(m.get("val_loss", float("nan")))})
    return rows


def trace(run_dir: str | Path, cfg: TraceConfig | None = None, *, progress: bool = True) -> dict:
    """The stage for a tokenclock run: every checkpoint in RUN/ckpt/ x the seeded validation tokens."""
    quiet_transformers()
    cfg = cfg or TraceConfig()
    # the series' one door: a RunDir names its own; a path takes trace.weights (the CLI's --weights)
    run = run_dir if isinstance(run_dir, RunDir) else RunDir(run_dir, cfg.weights)
    if cfg.weights not in (RAW, run.weights):
        raise ConfigError(f"trace.weights={cfg.weights}, but the RunDir given is the {run.weights} series",
                          f"pass RunDir(run, weights='{cfg.weights}')")
    cfg = dataclasses.replace(cfg, weights=run.weights)
    steps = run.ckpt_steps()
    if run.weights == AVG and not steps:
        raise ConfigError(f"trace.weights=avg, but {run.root} has no averaged weights ({run.weights_dir} is missing)",
                          f"train with train.avg=ema (it keeps RUN/{run.rel(run.weights_dir)}/ beside "
                          f"RUN/{run.rel(run.ckpt_dir)}/), or trace trace.weights={RAW}")
    if not steps:
        raise RunDirError(f"{run.ckpt_dir} holds no checkpoints",
                          f"train first: tokenclock train --config CONFIG --out {run.root}")
    if len(steps) < MIN_CHECKPOINTS:
        raise DataError(f"{run.root} has {len(steps)} checkpoints; a trace needs at least {MIN_CHECKPOINTS}",
                        "train longer or with more checkpoints per decade (train.ckpt_per_decade)")
    manifest = read_json(run.manifest) if run.manifest.is_file() else {"stages": {}}
    tconf = manifest["stages"].get("train", {}).get("config", {})
    cfg = cfg.resolved(tconf.get("train", {}).get("seq_len", 256), tconf.get("seed", 0))
    conf = dataclasses.asdict(cfg)
    if cfg.weights == RAW:  # raw traces made before trace.weights existed keep their signature
        conf.pop("weights")

    d = dist.init(resolve_device(cfg.device))  # under torchrun: sequences sharded over ranks
    meta = None
    with run.stage("trace", conf, writer=d.main, world_size=d.world) as st:
        vstream = read_npy(run.token_stream("val"), mmap=True)
        inputs = val_windows(vstream, cfg.seed, cfg.n_seqs, cfg.seq_len)
        device = dist.device_for(resolve_device(cfg.device), d)
        tok = load_tokenizer(run.tokenizer)  # before the trace: a missing tokenizer stops it early
        counts = read_npy(run.token_counts) if run.token_counts.is_file() else None
        rows = _axis_rows(run, steps)
        loss = trace_series(run, [(r, _loader(run.ckpt(r["step"]))) for r in rows], inputs, cfg, device,
                            progress=progress, signature=conf)
        if d.main:
            meta = _write_trace(run, rows, inputs, loss, tok, counts, cfg, device)
            meta["tokens_per_second"] = meta["n_tok"] * meta["n_ckpt"] / max(st.seconds, 1e-9)
            st.record(summary=meta)
    dist.barrier()  # the other ranks read what rank 0 wrote
    return meta if d.main else read_json(run.trace_meta)


def _average_info(run: RunDir) -> dict | None:
    """The averaged series' EMA (kind, sigma_rel, gamma, lag in ln step), from a checkpoint sidecar."""
    if run.weights != AVG:
        return None
    side = run.ckpt_sidecar(run.ckpt_steps()[-1])
    return read_json(side).get("average") if side.is_file() else None


def _loader(path: Path) -> Callable:
    """() -> the checkpoint's model on the CPU in float32; a checkpoint that does not load is an error
    naming it."""
    def load():
        import torch
        from transformers import AutoModelForCausalLM

        try:
            return AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
        except Exception as e:
            raise RunDirError(f"checkpoint {path} cannot be loaded ({type(e).__name__}: "
                              f"{str(e).splitlines()[0][:200]})",
                              f"delete {path} and resume training to rewrite it") from None
    return load


def _write_trace(run: RunDir, rows: list[dict], inputs: np.ndarray, loss: np.ndarray, tok,
                 counts: np.ndarray | None, cfg: TraceConfig, device) -> dict:
    """RUN/trace/{inputs.npy, axis.parquet, tokens.parquet, meta.json} beside loss.npy; returns meta."""
    write_npy(run.trace_inputs, inputs.astype(np.int32))
    write_parquet(run.trace_axis, {k: [r[k] for r in rows] for k in rows[0]})
    write_parquet(run.trace_tokens, token_table(tok, inputs, counts, cfg.context_tokens))
    meta = {"n_tok": int(loss.shape[1]), "n_ckpt": int(loss.shape[0]), "vocab_size": tok.get_vocab_size(),
            "seq_len": cfg.seq_len, "n_seqs": int(inputs.shape[0]), "axes": list(rows[0]),
            "source": "run", "dtype": "bf16" if trace_dtype(cfg.dtype, device) else "fp32",
            "weights": cfg.weights, "average": _average_info(run),
            "mean_loss_first": float(np.mean(loss[0])), "mean_loss_last": float(np.mean(loss[-1])),
            "warnings": axis_warnings(loss, [f"step {r['step']}" for r in rows], [r["step"] for r in rows],
                                      tok.get_vocab_size())}
    write_json(run.trace_meta, meta)
    return meta
