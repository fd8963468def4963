"""The train stage: reads RUN/tokens/ (and train.data_schedule), trains the Llama-style model with
AdamW (the Trainer, trainer.py), and writes the dense checkpoint series RUN/ckpt/step_XXXXXXX/
(Hugging Face format + tokenizer), RUN/ckpt/index.parquet and RUN/ckpt/train_log.parquet.

Resumable: the optimizer state of the newest checkpoint lives in RUN/ckpt/train_state.safetensors
(runs written before 0.2 keep their ckpt/train_state.pt, safetensors inside); the data order is a
pure function of (seed, step) (or an explicit schedule of sequence offsets), so a resumed run ends
with the same weights. `init_from` starts a run from another run's checkpoint (a WSD cooldown branch).
`train.zoom` then replays an interval of the finished run with denser checkpoints (zoom.py).
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from tokenclock import dist
from tokenclock.artifacts import file_sha256, read_json, read_npy
from tokenclock.errors import ConfigError, RunDirError, TokenizerError, TrainingError
from tokenclock.forward import quiet_transformers, resolve_device
from tokenclock.manifest import load_manifest, stage_status
from tokenclock.rundir import RunDir, ScheduleDir
from tokenclock.stages.tokens.tokenizer import hf_tokenizer, load_tokenizer
from tokenclock.stages.train.config import (
    DATA_ORDER_VERSION,
    EXEC_KEYS,
    STATE_KEYS,
    ZOOM_KEYS,
    ModelConfig,
    TrainConfig,
    init_path,
)
from tokenclock.stages.train.train_data import TrainData
from tokenclock.stages.train.trainer import Trainer
from tokenclock.stages.train.zoom import zoom
from tokenclock.windows import make_batch, val_offsets

MAX_EPOCHS = 4  # passes over the training split beyond which train warns (data-constrained scaling)


def train(run_dir: str | Path, config=None, *, progress: bool = True,
          init_root: str | Path | None = None) -> dict:
    """Train (or resume) the run in `run_dir`; returns a summary dict.

    `config` is a tokenclock Config (its model, train and seed); RUN/tokens/ must exist
    (tokenclock.train, in pipeline.py, runs the corpus and tokens stages first).
    `init_root`: the folder a relative train.init_from is relative to (default: the working
    directory); a study passes its own directory, so the path it records survives a move.
    With train.zoom set, the finished run is then replayed over that interval (zoom.py); the
    summary gains the zoom's record under "zoom".
    """
    quiet_transformers()
    cfg, run = config, RunDir(run_dir)
    conf = run_config(cfg)
    _check_same_run(run, conf, init_root)
    if stage_status(run, "train") == "done":
        summary = read_json(run.manifest)["stages"]["train"].get("summary", {})
    else:
        summary = _train(run, cfg, conf, progress, init_root)
    if cfg.train.zoom is not None:
        d = dist.init(resolve_device(cfg.train.device))
        data = read_data(run, cfg, read_json(run.tokens_meta))
        summary = {**summary, "zoom": zoom(run, cfg, data, d, progress=progress, init_root=init_root)}
    return summary


def run_config(cfg) -> dict:
    """What the manifest records as the run's train config (and _check_same_run compares): the
    model, train and seed sections, without the zoom keys (a zoom replays the run, it is no
    property of it)."""
    train = {k: v for k, v in dataclasses.asdict(cfg.train).items() if k not in ZOOM_KEYS}
    return {"model": dataclasses.asdict(cfg.model), "train": train, "seed": cfg.seed}


def _data_order(run: RunDir) -> int | None:
    """The data order version to record: this tokenclock's for a new run; a resumed run keeps the
    one it started with (None when an older tokenclock, which did not record it, started it)."""
    prev = load_manifest(run)["stages"].get("train") if run.manifest.is_file() else None
    return DATA_ORDER_VERSION if prev is None else prev.get("data_order_version")


def _train(run: RunDir, cfg, conf: dict, progress: bool, init_root: str | Path | None) -> dict:
    """Train (or resume) to train.steps and record the stage; returns its summary."""
    tc = cfg.train
    # Under torchrun, rank 0 prepares the corpus and tokens, takes the lock and writes every
    # artifact; each rank trains on its slice of the same global batch (DDP averages gradients).
    d = dist.init(resolve_device(tc.device))
    trainer = Trainer(run, cfg, d, progress=progress, init_root=init_root)  # checks config vs processes
    if not run.tokens_meta.is_file():
        raise RunDirError(f"{run.tokens_meta} does not exist",
                          f"run `tokenclock tokenize --out {run.root}` first (tokenclock.train runs it for you)")
    meta = read_json(run.tokens_meta)
    epochs = tc.epochs(meta["train_tokens"])
    if epochs > MAX_EPOCHS and d.main:
        print(f"tokenclock: warning: {tc.steps:,} steps x {tc.batch_size} x {tc.seq_len} tokens is {epochs:.1f} "
              f"epochs of the training split; past ~{MAX_EPOCHS} epochs repeated tokens are worth little "
              "(Muennighoff et al. 2023) and late checkpoints measure memorisation: use a larger corpus "
              "(corpus.sources) or fewer train.steps")
    order = _data_order(run)
    extra = {} if order is None else {"data_order_version": order}
    with run.stage("train", conf, writer=d.main, world_size=d.world, **extra) as st:
        trainer.setup(read_data(run, cfg, meta))
        st.note(precision=trainer.precision.record())  # a resume (or a zoom) keeps this dtype
        trainer.resume()
        trainer.loop()
        summary = trainer.summary()
        st.record(summary=summary, ckpt_steps=sorted(trainer.ckpts))
    return summary


def read_data(run: RunDir, cfg, meta: dict) -> TrainData:
    """The token streams, the validation windows and the tokenizer from RUN/tokens/ (`meta`: its
    meta.json), and train.data_schedule, checked against this run."""
    tc = cfg.train
    stream = read_npy(run.token_stream("train"), mmap=True)
    vstream = read_npy(run.token_stream("val"), mmap=True)
    if len(stream) < tc.seq_len + 2:
        raise TrainingError(f"the training split has {len(stream)} tokens, fewer than one "
                            f"sequence of {tc.seq_len + 1}", "use a larger corpus or a smaller train.seq_len")
    hf_tok = hf_tokenizer(load_tokenizer(run.tokenizer))
    vbatch = make_batch(vstream, val_offsets(cfg.seed, len(vstream), tc.val_seqs, tc.seq_len), tc.seq_len)
    schedule = load_data_schedule(tc, len(stream), run) if tc.data_schedule else None
    weights = load_token_weights(tc) if tc.data_schedule else None
    return TrainData(stream=stream, val_batch=vbatch[: tc.val_seqs], vocab_size=meta["vocab_size"],
                     train_tokens=meta["train_tokens"], eos_id=meta["eos_id"], schedule=schedule,
                     hf_tok=hf_tok, token_weights=weights)


def load_data_schedule(tc: TrainConfig, n_tokens: int, run: RunDir | None = None) -> np.ndarray:
    """The (steps, batch_size) start offsets of a reshaped run (train.data_schedule: the .npy or
    the folder `tokenclock reshape` wrote), checked against this run (a folder's meta.json: the
    steps, batch size, seq_len, stream and tokenizer it was built for)."""
    path = Path(tc.data_schedule)
    if path.is_dir():
        _check_schedule_meta(ScheduleDir(path), tc, n_tokens, run)
        path = ScheduleDir(path).offsets
    sched = read_npy(path, mmap=True)
    if sched.ndim != 2 or sched.shape[0] < tc.steps or sched.shape[1] != tc.batch_size:
        raise ConfigError(f"{path} has shape {sched.shape}; this run needs ({tc.steps}, {tc.batch_size})",
                          "write the schedule with the same train.steps and train.batch_size")
    lo, hi = int(np.min(sched[: tc.steps])), int(np.max(sched[: tc.steps]))
    if lo < 0 or hi > n_tokens - tc.seq_len - 1:
        raise ConfigError(f"{path} has offsets outside the training stream ({lo}..{hi}, stream has {n_tokens} tokens)",
                          "the schedule was made for another tokenization; rebuild it with `tokenclock reshape`")
    return sched


def _check_schedule_meta(sd: ScheduleDir, tc: TrainConfig, n_tokens: int, run: RunDir | None) -> None:
    """Refuse a schedule built for another run shape (naming both), another training stream or
    another tokenizer. Schedules without meta.json (a bare .npy) get the shape check only."""
    if not sd.meta.is_file():
        return
    meta = read_json(sd.meta)
    built = tuple(meta.get(k) for k in ("steps", "batch_size", "seq_len"))
    here = (tc.steps, tc.batch_size, tc.seq_len)
    if built != here:
        raise ConfigError(f"{sd.root} was built for {built[0]} steps x {built[1]} x {built[2]} tokens (steps, "
                          f"batch_size, seq_len); this run trains {here[0]} x {here[1]} x {here[2]}",
                          "rebuild it with `tokenclock reshape REF --steps S --batch-size B --seq-len L` for this run")
    sha = meta.get("tokenizer_sha256")
    if sha and run is not None and run.tokenizer.is_file():
        mine = file_sha256(run.tokenizer)
        if mine != sha:
            raise TokenizerError(f"{sd.root} was built on the tokenizer of {meta.get('reference')} (sha256 {sha[:12]}); "
                                 f"this run's {run.tokenizer} differs (sha256 {mine[:12]})",
                                 "train the reference (proxy) on the same tokens/ as the new run")
    if meta.get("n_tokens") not in (None, n_tokens):
        raise ConfigError(f"{sd.root} was built on a training stream of {meta['n_tokens']:,} tokens; this run's "
                          f"has {n_tokens:,}", "use the same corpus and tokens/ as the reference, or rebuild the schedule")


def load_token_weights(tc: TrainConfig) -> np.ndarray | None:
    """SCHEDULE/weights.npy (steps, batch_size, seq_len) float16 per-token loss weights, memory-mapped,
    when train.data_schedule is a folder that holds one; else None (uniform weights)."""
    path = Path(tc.data_schedule)
    if not path.is_dir() or not ScheduleDir(path).loss_weights.is_file():
        return None
    w = read_npy(ScheduleDir(path).loss_weights, mmap=True)
    if w.shape != (tc.steps, tc.batch_size, tc.seq_len):
        raise ConfigError(f"{ScheduleDir(path).loss_weights} has shape {w.shape}; this run needs "
                          f"({tc.steps}, {tc.batch_size}, {tc.seq_len})", "rebuild the schedule for this run")
    return w


# ----------------------------------------------------------------------------- one run per directory


def _same_init(prev: str | None, new: str | None, init_root: str | Path | None) -> bool:
    """Whether a recorded and a new train.init_from name one checkpoint. A study records it relative
    to its directory (so a moved study matches); older studies recorded it absolute."""
    if prev == new or not prev or not new:
        return prev == new
    if init_path(prev, init_root).resolve() == init_path(new, init_root).resolve():
        return True
    # absolute path recorded by an older study that has been moved since: same place inside it
    rel = Path(new).parts
    return init_root is not None and Path(prev).is_absolute() and not Path(new).is_absolute() \
        and Path(prev).parts[-len(rel):] == rel


def _check_same_run(run: RunDir, conf: dict, init_root: str | Path | None = None) -> None:
    """Refuse a run directory whose recorded train config differs from `conf` (options added in
    a later version count as equal when `conf` leaves them at their defaults; the options that
    keep training state or zoom, STATE_KEYS and ZOOM_KEYS, change no weight and are not compared;
    nor is train.threads, EXEC_KEYS: a run may resume with another thread count)."""
    if not run.manifest.is_file():
        return
    prev = load_manifest(run)["stages"].get("train", {}).get("config")
    if prev is not None:
        ignored = STATE_KEYS + ZOOM_KEYS + EXEC_KEYS
        prev = {**prev, "train": {k: v for k, v in prev.get("train", {}).items() if k not in ignored}}
        conf = {**conf, "train": {k: v for k, v in conf.get("train", {}).items() if k not in ignored}}
    old_init, new_init = (prev or {}).get("train", {}).get("init_from"), conf["train"].get("init_from")
    if old_init != new_init and _same_init(old_init, new_init, init_root):
        prev = {**prev, "train": {**prev["train"], "init_from": new_init}}
    if prev is not None:  # options added in a later version, left at their defaults, change nothing
        for sec, cls in (("model", ModelConfig), ("train", TrainConfig)):
            defaults = {f.name: f.default if f.default is not dataclasses.MISSING else f.default_factory()
                        for f in dataclasses.fields(cls)}
            missing = {k: v for k, v in conf.get(sec, {}).items()
                       if k not in prev.get(sec, {}) and k in defaults and v == defaults[k]}
            if missing:
                prev = {**prev, sec: {**prev.get(sec, {}), **missing}}
    if prev is not None and prev != conf:
        diffs = [f"{sec}.{k}: {prev.get(sec, {}).get(k)!r} -> {v!r}"
                 for sec in ("model", "train") for k, v in conf.get(sec, {}).items()
                 if prev.get(sec, {}).get(k) != v]
        if prev.get("seed") != conf.get("seed"):
            diffs.append(f"seed: {prev.get('seed')} -> {conf.get('seed')}")
        raise RunDirError(f"{run.root} holds a different run ({'; '.join(diffs[:3]) or 'config differs'})",
                          "use a new --out directory, or delete the old one")
