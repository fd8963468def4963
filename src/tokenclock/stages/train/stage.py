"""The train stage: reads RUN/tokens/, trains the Llama-style model with AdamW, and writes the dense
checkpoint series RUN/ckpt/step_XXXXXXX/ (Hugging Face format + tokenizer) and RUN/ckpt/index.parquet.

Resumable: the optimizer state of the newest checkpoint lives in RUN/ckpt/train_state.safetensors;
the data order is a pure function of (seed, step) (or an explicit schedule of sequence offsets), so a
resumed run ends with the same weights. `init_from` starts a run from another run's checkpoint
(a WSD cooldown branch).
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tokenclock import dist
from tokenclock.errors import ConfigError, RunDirError, TrainingError
from tokenclock.rundir import RunDir, load_manifest, run_lock, stage_status, update_stage
from tokenclock.artifacts import (atomic_path, read_json, read_npy, read_parquet, write_json, write_parquet)
from tokenclock.scoring import autocast_dtype, resolve_device, token_losses
from tokenclock.stages.data.tokens import hf_tokenizer, load_tokenizer
from tokenclock.stages.train.model import (ModelConfig, build_model, non_embedding_params,
                                           quiet_transformers)
from tokenclock.stages.train.perf import flops_per_token, peak_flops
from tokenclock.stages.train.schedule import checkpoint_steps, lr_at
from tokenclock.windows import batch_offsets, make_batch, val_offsets


@dataclass
class TrainConfig:
    """Optimisation, data order and the checkpoint schedule."""

    steps: int = 1000  # optimizer updates
    batch_size: int = 16  # sequences per update (global)
    seq_len: int = 256  # tokens per training sequence
    lr_peak: float = 3e-3
    schedule: str = "cosine"  # cosine | wsd | constant
    warmup_steps: int = 50
    lr_min_ratio: float = 0.1  # final lr = lr_min_ratio * lr_peak
    decay_fraction: float = 0.2  # wsd: share of steps spent decaying
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.95
    grad_clip: float = 1.0  # max global gradient norm; 0 disables
    ckpt_per_decade: int = 16  # log-spaced checkpoints per factor of 10 in step (0 and 1 included)
    ckpt_linear_every: int = 0  # also checkpoint every N steps (0 = off)
    extra_ckpt_steps: list[int] = field(default_factory=list)  # explicit extra steps
    val_seqs: int = 32  # validation sequences scored at every checkpoint
    dtype: str = "auto"  # auto (bf16 autocast where supported) | bf16 | fp32
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    threads: int = 0  # torch CPU threads (0 = torch default)
    data_schedule: str | None = None  # .npy int64 (steps, batch_size) of sequence start offsets
    # into tokens/train.npy (written by `tokenclock reshape`); None = uniform seeded sampling
    init_from: str | None = None  # a checkpoint folder to start from (weights, and the optimizer
    # state when it holds optimizer.safetensors); training continues at its step (cooldown branches)
    keep_state_steps: list[int] = field(default_factory=list)  # checkpoints that also keep their
    # optimizer state (ckpt/step_X/optimizer.safetensors), so branches can start there
    fsdp: bool = False  # under torchrun: shard parameters, gradients and AdamW state (FSDP2)
    # instead of replicating them (DDP), for models that do not fit one device
    micro_batch_size: int = 0  # sequences per forward pass on each process; the global batch is
    # accumulated over batch_size / (processes * micro_batch_size) passes (0 = one pass)
    compile: bool = False  # torch.compile the model (GPU throughput; 10-60 s of compile first)

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size", "seq_len", "val_seqs"):
            if getattr(self, name) < 1:
                raise ConfigError(f"train.{name} must be >= 1, got {getattr(self, name)}")
        if self.schedule not in ("cosine", "wsd", "constant"):
            raise ConfigError(f"unknown train.schedule '{self.schedule}'", "use cosine, wsd or constant")
        if self.dtype not in ("auto", "bf16", "fp32"):
            raise ConfigError(f"unknown train.dtype '{self.dtype}'", "use auto, bf16 or fp32")
        if not (self.lr_peak > 0 and math.isfinite(self.lr_peak)):
            raise ConfigError(f"train.lr_peak must be > 0, got {self.lr_peak}")
        if not 0 <= self.warmup_steps <= self.steps:
            raise ConfigError(f"train.warmup_steps must be in [0, train.steps], got {self.warmup_steps}")
        if self.micro_batch_size < 0:
            raise ConfigError(f"train.micro_batch_size must be >= 0, got {self.micro_batch_size}")

    def ckpt_steps(self) -> list[int]:
        steps = set(checkpoint_steps(self.steps, self.ckpt_per_decade, self.ckpt_linear_every))
        steps.update(s for s in self.extra_ckpt_steps if 0 <= s <= self.steps)
        return sorted(steps)

    def lr(self, step: int) -> float:
        return lr_at(step, schedule=self.schedule, lr_peak=self.lr_peak, total_steps=self.steps,
                     warmup_steps=self.warmup_steps, lr_min_ratio=self.lr_min_ratio,
                     decay_fraction=self.decay_fraction)


WARM_STEPS = 3  # steps left out of the steady tokens/s (compile, kernel autotuning, allocator)
MAX_EPOCHS = 4  # passes over the training split beyond which train warns (data-constrained scaling)

# ----------------------------------------------------------------------------- checkpoints


def save_checkpoint(run: RunDir, model, hf_tok, step: int, meta: dict, state_dict=None) -> Path:
    """Write RUN/ckpt/step_XXXXXXX/ under a temporary name, fsync, and rename into place
    (`state_dict`: the full weights of a sharded model)."""
    final = run.ckpt(step)
    tmp = final.with_name(f".{final.name}.tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp, safe_serialization=True, state_dict=state_dict)
    hf_tok.save_pretrained(tmp)
    (tmp / "tokenclock.json").write_text(json.dumps(meta, indent=2) + "\n")
    for p in tmp.iterdir():
        with open(p, "rb") as fh:
            os.fsync(fh.fileno())
    if final.exists():  # recomputed after a crash between rename and state write: same weights
        shutil.rmtree(final)
    os.replace(tmp, final)
    return final


def optimizer_tensors(optimizer) -> dict:
    """AdamW moments of every parameter by position, as full CPU tensors. With FSDP the moments
    are sharded DTensors and gathering them is a collective: every rank must call this."""
    tensors = {}
    for gi, group in enumerate(optimizer.param_groups):
        for pi, p in enumerate(group["params"]):
            st = optimizer.state.get(p, {})
            for key in ("exp_avg", "exp_avg_sq"):
                if key in st:
                    t = st[key].detach()
                    t = t.full_tensor() if hasattr(t, "full_tensor") else t
                    tensors[f"g{gi}.p{pi}.{key}"] = t.cpu().contiguous()
            if "step" in st:
                tensors[f"g{gi}.p{pi}.step"] = st["step"].detach().cpu().reshape(1).float()
    return tensors


def save_state(path: Path, optimizer, step: int, extra: dict, tensors: dict | None = None) -> None:
    """AdamW moments of every parameter, as safetensors (no pickle), with the step in metadata."""
    from safetensors.torch import save_file

    tensors = optimizer_tensors(optimizer) if tensors is None else tensors
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata={"step": str(step), "extra": json.dumps(extra)})


def state_step(path: Path) -> int:
    """The step an optimizer-state file belongs to (from its metadata; no tensors read)."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        return int(f.metadata()["step"])


def load_state(path: Path, optimizer) -> tuple[int, dict]:
    import torch
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata()
        for gi, group in enumerate(optimizer.param_groups):
            for pi, p in enumerate(group["params"]):
                name = f"g{gi}.p{pi}"
                if f"{name}.exp_avg" in f.keys():
                    st = optimizer.state[p]
                    for key in ("exp_avg", "exp_avg_sq"):
                        t = f.get_tensor(f"{name}.{key}").to(p.device)
                        if hasattr(p, "device_mesh"):  # FSDP: keep this rank's shard
                            from torch.distributed.tensor import distribute_tensor

                            t = distribute_tensor(t, p.device_mesh, p.placements)
                        st[key] = t
                    st["step"] = torch.tensor(float(f.get_tensor(f"{name}.step").item()))
    return int(meta["step"]), json.loads(meta.get("extra", "{}"))


def load_weights(model, step_dir: Path, tied: bool) -> None:
    """Weights of a checkpoint folder into `model`, refusing a checkpoint of another shape."""
    from safetensors.torch import load_file

    weights = Path(step_dir) / "model.safetensors"
    if not weights.is_file():
        raise RunDirError(f"{weights} is missing", f"delete {Path(step_dir).parent} to restart training, "
                          "or point train.init_from at a complete checkpoint folder")
    try:
        sd = load_file(str(weights))
        missing, unexpected = model.load_state_dict(sd, strict=False)
    except (RuntimeError, OSError) as e:
        raise RunDirError(f"checkpoint {weights} does not match the configured model or is corrupt "
                          f"({str(e).splitlines()[0][:160]})", "use a new --out directory") from None
    if unexpected or any("lm_head" not in m for m in missing):
        raise RunDirError(f"checkpoint {weights} does not match the configured model",
                          "use a new --out directory")
    if tied:
        model.tie_weights()


def load_data_schedule(tc: TrainConfig, n_tokens: int) -> np.ndarray:
    """The (steps, batch_size) start offsets of a reshaped run, checked against this run."""
    path = Path(tc.data_schedule)
    if path.is_dir():
        path = path / "offsets.npy"
    sched = read_npy(path, mmap=True)
    if sched.ndim != 2 or sched.shape[0] < tc.steps or sched.shape[1] != tc.batch_size:
        raise ConfigError(f"{path} has shape {sched.shape}; this run needs ({tc.steps}, {tc.batch_size})",
                          "write the schedule with the same train.steps and train.batch_size")
    lo, hi = int(np.min(sched[: tc.steps])), int(np.max(sched[: tc.steps]))
    if lo < 0 or hi > n_tokens - tc.seq_len - 1:
        raise ConfigError(f"{path} has offsets outside the training stream ({lo}..{hi}, stream has {n_tokens} tokens)",
                          "the schedule was made for another tokenization; rebuild it with `tokenclock reshape`")
    return sched


# ----------------------------------------------------------------------------- the stage


def init_path(init_from: str | None, init_root: str | Path | None = None) -> Path | None:
    """The checkpoint folder train.init_from names: absolute as given; relative against `init_root`
    (a study's directory) or else the working directory."""
    if not init_from:
        return None
    p = Path(init_from)
    return p if p.is_absolute() or init_root is None else Path(init_root) / p


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
    if not run.manifest.is_file():
        return
    prev = load_manifest(run)["stages"].get("train", {}).get("config")
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


def train(run_dir: str | Path, config=None, *, progress: bool = True,
          init_root: str | Path | None = None) -> dict:
    """Train (or resume) the run in `run_dir`; returns a summary dict.

    `config` is a tokenclock Config (its model, train and seed); RUN/tokens/ must exist
    (tokenclock.train, in pipeline.py, runs the corpus and tokens stages first).
    `init_root`: the folder a relative train.init_from is relative to (default: the working
    directory); a study passes its own directory, so the path it records survives a move.
    """
    import torch
    from tqdm.auto import tqdm

    quiet_transformers()
    cfg = config
    tc, run = cfg.train, RunDir(run_dir)
    conf = {"model": dataclasses.asdict(cfg.model), "train": dataclasses.asdict(tc), "seed": cfg.seed}
    _check_same_run(run, conf, init_root)
    if stage_status(run, "train") == "done":
        return read_json(run.manifest)["stages"]["train"].get("summary", {})

    # Under torchrun, rank 0 prepares the corpus and tokens, takes the lock and writes every
    # artifact; each rank trains on its slice of the same global batch (DDP averages gradients).
    d = dist.init(resolve_device(tc.device))
    if tc.fsdp and not d.enabled:
        raise ConfigError("train.fsdp shards the model over processes and needs torchrun with 2 or more",
                          "run `torchrun --nproc_per_node=N -m tokenclock train ...`, or drop train.fsdp")
    if tc.batch_size % d.world:
        raise ConfigError(f"train.batch_size {tc.batch_size} is not divisible by {d.world} processes",
                          "use a global batch size that is a multiple of the number of processes")
    per_rank = tc.batch_size // d.world
    micro = tc.micro_batch_size or per_rank
    if per_rank % micro:
        raise ConfigError(f"train.micro_batch_size {micro} does not divide the {per_rank} sequences "
                          f"each of {d.world} process(es) takes per step",
                          "pick a micro batch that divides train.batch_size / processes")
    n_micro = per_rank // micro
    progress = progress and d.main
    if not run.tokens_meta.is_file():
        raise RunDirError(f"{run.tokens_meta} does not exist",
                          f"run `tokenclock tokenize --out {run.root}` first (tokenclock.train runs it for you)")
    meta = read_json(run.tokens_meta)
    epochs = tc.steps * tc.batch_size * tc.seq_len / max(1, meta["train_tokens"])
    if epochs > MAX_EPOCHS and d.main:
        print(f"tokenclock: warning: {tc.steps:,} steps x {tc.batch_size} x {tc.seq_len} tokens is {epochs:.1f} "
              f"epochs of the training split; past ~{MAX_EPOCHS} epochs repeated tokens are worth little "
              "(Muennighoff et al. 2023) and late checkpoints measure memorisation: use a larger corpus "
              "(corpus.sources) or fewer train.steps")
    t_start = time.time()
    with run_lock(run, "train") if d.main else contextlib.nullcontext():
        if d.main:
            update_stage(run, "train", "running", config=conf, world_size=d.world)
        if tc.threads:
            torch.set_num_threads(tc.threads)
        device = dist.device_for(resolve_device(tc.device), d)
        amp = autocast_dtype(tc.dtype, device)
        stream = read_npy(run.token_stream("train"), mmap=True)
        vstream = read_npy(run.token_stream("val"), mmap=True)
        if len(stream) < tc.seq_len + 2:
            raise TrainingError(f"the training split has {len(stream)} tokens, fewer than one "
                                f"sequence of {tc.seq_len + 1}", "use a larger corpus or a smaller train.seq_len")
        if tc.seq_len > cfg.model.max_seq_len:
            raise ConfigError(f"train.seq_len {tc.seq_len} exceeds model.max_seq_len {cfg.model.max_seq_len}")
        tok = load_tokenizer(run.tokenizer)
        hf_tok = hf_tokenizer(tok)
        model = build_model(cfg.model, meta["vocab_size"], cfg.seed, eos_id=meta["eos_id"]).to(device)
        n_params = non_embedding_params(model)
        # weights to continue from go into the whole model before it is wrapped or sharded
        resuming = run.train_state.is_file()
        init_src = init_path(tc.init_from, init_root) if not resuming else None
        if resuming:
            load_weights(model, run.ckpt(state_step(run.train_state)), cfg.model.tie_embeddings)
        elif init_src is not None:
            load_weights(model, init_src, cfg.model.tie_embeddings)
        if device.startswith("cuda"):
            torch.set_float32_matmul_precision("high")  # TF32 for whatever runs outside autocast
        if tc.fsdp:
            from torch.distributed.fsdp import fully_shard

            for layer in model.model.layers:
                fully_shard(layer)
            fully_shard(model)
        if tc.compile:
            model.compile()  # in place: save_pretrained and state dicts keep their names
        if tc.fsdp or not d.enabled:
            net = model
        else:
            net = torch.nn.parallel.DistributedDataParallel(model)
        fpt = flops_per_token(n_params, meta["vocab_size"], cfg.model.hidden_size, cfg.model.num_layers,
                              tc.seq_len)
        peak = peak_flops(device)
        decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
        no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
        opt = torch.optim.AdamW([{"params": decay, "weight_decay": tc.weight_decay},
                                 {"params": no_decay, "weight_decay": 0.0}],
                                lr=tc.lr_peak, betas=(tc.beta1, tc.beta2), eps=1e-8,
                                fused=device.startswith("cuda"))
        vbatch = make_batch(vstream, val_offsets(cfg.seed, len(vstream), tc.val_seqs, tc.seq_len), tc.seq_len)
        vbatch = vbatch[: tc.val_seqs]
        ckpts = set(tc.ckpt_steps())
        schedule = load_data_schedule(tc, len(stream)) if tc.data_schedule else None
        tokens_per_step = tc.batch_size * tc.seq_len

        # resume from the newest checkpoint that has a matching optimizer state
        start, rows, log, cum_lr, ckpt_seconds = 0, [], [], 0.0, 0.0
        if resuming:
            start, extra = load_state(run.train_state, opt)
            cum_lr = extra.get("cum_lr", 0.0)
            if run.ckpt_index.is_file():
                idx = read_parquet(run.ckpt_index)
                rows = [{k: idx[k][i].item() for k in idx} for i in range(len(idx["step"])) if idx["step"][i] <= start]
            if run.train_log.is_file():
                lg = read_parquet(run.train_log)
                log = [{k: lg[k][i].item() for k in lg} for i in range(len(lg["step"])) if lg["step"][i] < start]

        def checkpoint(step: int, train_loss: float, seconds: float) -> None:
            nonlocal ckpt_seconds
            t_ckpt = time.time()
            try:
                _checkpoint(step, train_loss, seconds)
            finally:
                ckpt_seconds += time.time() - t_ckpt

        def _checkpoint(step: int, train_loss: float, seconds: float) -> None:
            if not (d.main or tc.fsdp):
                dist.barrier()
                return
            model.eval()  # with FSDP the forward and the gathers below are collectives
            with torch.no_grad():
                vl = float(token_losses(model, vbatch, amp, device).mean())
            model.train()
            full_sd, opt_full = None, None
            if tc.fsdp:
                from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

                full_sd = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True,
                                                                               cpu_offload=True))
                if cfg.model.tie_embeddings:  # saved once, as the embedding (like save_pretrained)
                    full_sd.pop("lm_head.weight", None)
                opt_full = optimizer_tensors(opt)
                if not d.main:
                    dist.barrier()
                    return
            if not math.isfinite(vl):
                raise TrainingError(f"validation loss is {vl} at step {step}: training diverged",
                                    "lower train.lr_peak or raise train.warmup_steps; finished checkpoints are kept")
            row = {"step": step, "tokens_seen": step * tokens_per_step, "lr": tc.lr(step),
                   "cum_lr": cum_lr, "train_loss": train_loss, "val_loss": vl, "seconds": seconds}
            save_checkpoint(run, model, hf_tok, step, row | {"n_params": n_params}, state_dict=full_sd)
            rows.append(row)
            write_parquet(run.ckpt_index, {k: [r[k] for r in rows] for k in row})
            if log:
                write_parquet(run.train_log, {k: [r[k] for r in log] for k in log[0]})
            save_state(run.train_state, opt, step, {"cum_lr": cum_lr}, opt_full)
            if step in tc.keep_state_steps:
                save_state(run.ckpt(step) / "optimizer.safetensors", opt, step, {"cum_lr": cum_lr}, opt_full)
            dist.barrier()

        if init_src is not None:
            src = init_src
            side = read_json(src / "tokenclock.json") if (src / "tokenclock.json").is_file() else {}
            start, cum_lr = int(side.get("step", 0)), float(side.get("cum_lr", 0.0))
            if (src / "optimizer.safetensors").is_file():
                start, extra = load_state(src / "optimizer.safetensors", opt)
                cum_lr = extra.get("cum_lr", cum_lr)
            else:
                print(f"tokenclock: warning: {src} has no optimizer.safetensors; AdamW starts fresh "
                      "(set train.keep_state_steps in the source run to keep it)")
            if start >= tc.steps:
                raise ConfigError(f"train.init_from is at step {start}, not before train.steps={tc.steps}")
            checkpoint(start, float("nan"), 0.0)
        elif start == 0 and not run.ckpt(0).is_dir():
            checkpoint(0, float("nan"), 0.0)
        model.train()
        t0, window, pending, ckpt_seconds = time.time(), [], [], 0.0  # loop time excludes checkpoints
        # the steady rate starts after the first WARM_STEPS steps (torch.compile, kernel autotuning)
        warm_at = start + WARM_STEPS if tc.steps - start > 2 * WARM_STEPS else start
        t_warm, ckpt_warm = t0, 0.0
        # GPU: read losses back every few steps, not every step, so the host never waits on the
        # device mid-run (a diverged step is still caught before the next checkpoint is written)
        sync_every = 16 if device.startswith("cuda") else 1

        def flush() -> None:
            if not pending:
                return
            losses = torch.stack([p[2] for p in pending]).float()
            if d.enabled:
                losses = dist.mean_over_ranks(losses)
            norms = torch.stack([p[3].float() for p in pending]).tolist()
            for (st, lr_st, _, _), lval, gn in zip(pending, losses.tolist(), norms):
                if not math.isfinite(lval):
                    raise TrainingError(f"training loss is {lval} at step {st}: training diverged",
                                        "lower train.lr_peak or raise train.warmup_steps; finished checkpoints are kept")
                window.append(lval)
                log.append({"step": st, "loss": lval, "lr": lr_st, "grad_norm": gn})
            if progress:
                el = time.time() - t0 - ckpt_seconds
                rate = (pending[-1][0] + 1 - start) * tokens_per_step / max(el, 1e-9)
                post = {"loss": f"{log[-1]['loss']:.3f}", "tok_s": f"{rate:,.0f}"}
                if peak:
                    post["mfu"] = f"{rate * fpt / (peak * d.world):.0%}"
                bar.set_postfix(post)
                bar.update(len(pending))
            pending.clear()

        bar = tqdm(total=tc.steps, initial=start, desc="train", unit="step", disable=not progress,
                   dynamic_ncols=True)
        for step in range(start, tc.steps):
            if step == warm_at and step > start:
                if device.startswith("cuda"):
                    torch.cuda.synchronize(device)
                t_warm, ckpt_warm = time.time(), ckpt_seconds
            lr = tc.lr(step)
            for g in opt.param_groups:
                g["lr"] = lr
            offs = schedule[step] if schedule is not None else \
                batch_offsets(cfg.seed, step, len(stream), tc.batch_size, tc.seq_len)
            batch = make_batch(stream, offs[d.rank::d.world], tc.seq_len)
            opt.zero_grad(set_to_none=True)
            loss_sum = None
            for i in range(n_micro):  # gradient accumulation; gradients sync on the last pass only
                last = i == n_micro - 1
                mb = batch[i * micro:(i + 1) * micro].to(device, non_blocking=True)
                if tc.fsdp and n_micro > 1:
                    model.set_requires_gradient_sync(last)
                ctx = net.no_sync() if (net is not model and not last) else contextlib.nullcontext()
                with ctx:
                    with torch.autocast(device.split(":")[0], dtype=amp or torch.float32, enabled=amp is not None):
                        logits = net(input_ids=mb[:, :-1]).logits
                    loss = torch.nn.functional.cross_entropy(logits.float().reshape(-1, logits.size(-1)),
                                                             mb[:, 1:].reshape(-1))
                    if n_micro > 1:
                        loss = loss / n_micro
                    loss.backward()
                loss_sum = loss.detach() if loss_sum is None else loss_sum + loss.detach()
            gnorm = torch.nn.utils.clip_grad_norm_(model.parameters(), tc.grad_clip if tc.grad_clip > 0 else float("inf"))
            gnorm = gnorm.full_tensor() if hasattr(gnorm, "full_tensor") else gnorm
            opt.step()
            cum_lr += lr
            pending.append((step, lr, loss_sum, gnorm.detach()))
            if len(pending) >= sync_every or step + 1 in ckpts or step + 1 == tc.steps:
                flush()
            if step + 1 in ckpts:
                checkpoint(step + 1, float(np.mean(window)), time.time() - t_start)
                window = []
        bar.close()
        loop_seconds = time.time() - t_warm - (ckpt_seconds - ckpt_warm)
        dist.barrier()
        seconds = time.time() - t_start
        trained = tc.steps - start
        loop_rate = (tc.steps - warm_at) * tokens_per_step / max(loop_seconds, 1e-9) if trained else None
        summary = {"steps": tc.steps, "n_checkpoints": len(run.ckpt_steps()), "n_params": n_params,
                   "final_val_loss": rows[-1]["val_loss"] if rows else None,
                   "tokens_seen": tc.steps * tokens_per_step, "epochs": round(epochs, 3), "world_size": d.world,
                   "tokens_per_second": trained * tokens_per_step / max(seconds, 1e-9) if trained else None,
                   # the training loop alone (checkpoint writes, validation and the first
                   # WARM_STEPS steps excluded), and its model FLOPs utilisation against the
                   # device's dense bf16 peak (GPU only)
                   "loop_tokens_per_second": loop_rate, "flops_per_token": fpt,
                   "mfu": loop_rate * fpt / (peak * d.world) if (peak and loop_rate) else None,
                   "device": device, "dtype": "bf16" if amp is not None else "fp32",
                   "micro_batches": n_micro, "compiled": tc.compile, "resumed_from": start}
        if d.main:
            update_stage(run, "train", "done", config=conf, seconds=seconds, summary=summary,
                         ckpt_steps=sorted(ckpts))
    return summary
