"""The Trainer: one training run as an object (setup, resume, step, the periodic read-back,
checkpoint, summary), trained on the arrays the stage hands it (TrainData); writes RUN/ckpt/ through
checkpoint.py. torch and tqdm are imported inside the methods (start-up time).
"""
from __future__ import annotations

import contextlib
import math
import time
from pathlib import Path

import numpy as np

from tokenclock import dist, precision
from tokenclock.artifacts import read_json, write_parquet
from tokenclock.errors import ConfigError, TrainingError
from tokenclock.forward import resolve_device, token_losses
from tokenclock.manifest import load_manifest
from tokenclock.rundir import AVG, RunDir, ckpt_optimizer, ckpt_sidecar
from tokenclock.stages.train.average import WeightAverage
from tokenclock.stages.train.checkpoint import (
    load_state,
    load_weights,
    read_rows,
    save_checkpoint,
    save_state,
    state_step,
)
from tokenclock.stages.train.config import init_path
from tokenclock.stages.train.loss_weights import step_weights, weights_summary
from tokenclock.stages.train.model import build_model, non_embedding_params
from tokenclock.stages.train.perf import flops_per_token, peak_flops
from tokenclock.stages.train.train_data import TrainData
from tokenclock.stages.train.wrap import gather_full, wrap_model
from tokenclock.windows import batch_offsets, make_batch

WARM_STEPS = 3  # steps left out of the steady tokens/s (compile, kernel autotuning, allocator)
# GPU: read losses back every few steps, not every step, so the host never waits on the device
# mid-run (a diverged step is still caught before the next checkpoint is written)
SYNC_EVERY_GPU = 16
DIVERGED_HINT = "lower train.lr_peak or raise train.warmup_steps; finished checkpoints are kept"




class Trainer:
    """One training run on `run` with `cfg` (a tokenclock Config: model, train, seed) under the
    processes `d`. Construction checks the config against the processes and builds nothing; then
    `setup(data)`, `resume()`, `loop()` (which calls `step`, `flush` and `checkpoint`), `summary()`."""

    def __init__(self, run: RunDir | str | Path, cfg, d: dist.Dist | None = None, *, progress: bool = False,
                 init_root: str | Path | None = None):
        self.run = run if isinstance(run, RunDir) else RunDir(run)
        self.cfg, self.tc, self.d = cfg, cfg.train, d or dist.current()
        tc, d = self.tc, self.d
        if tc.fsdp and not d.enabled:
            raise ConfigError("train.fsdp shards the model over processes and needs torchrun with 2 or more",
                              "run `torchrun --nproc_per_node=N -m tokenclock train ...`, or drop train.fsdp")
        if tc.batch_size % d.world:
            raise ConfigError(f"train.batch_size {tc.batch_size} is not divisible by {d.world} processes",
                              "use a global batch size that is a multiple of the number of processes")
        per_rank = tc.batch_size // d.world
        self.micro = tc.micro_batch_size or per_rank  # sequences per forward pass
        if per_rank % self.micro:
            raise ConfigError(f"train.micro_batch_size {self.micro} does not divide the {per_rank} sequences "
                              f"each of {d.world} process(es) takes per step",
                              "pick a micro batch that divides train.batch_size / processes")
        if tc.avg != "none" and tc.fsdp:
            raise ConfigError("train.avg keeps a full copy of the weights and does not work with train.fsdp yet",
                              "drop train.avg, or train with DDP (train.fsdp=false)")
        if tc.seq_len > cfg.model.max_seq_len:
            raise ConfigError(f"train.seq_len {tc.seq_len} exceeds model.max_seq_len {cfg.model.max_seq_len}")
        self.n_micro = per_rank // self.micro
        self.progress, self.init_root = progress and d.main, init_root
        self.ckpts = set(tc.ckpt_steps())
        self.t_start = time.time()  # checkpoint rows' seconds and the summary's tokens/s count from here
        # where training (re)starts, and what it carries over (resume)
        self.start, self.cum_lr, self.resuming, self.init_src = 0, 0.0, False, None
        self.rows: list[dict] = []  # RUN/ckpt/index.parquet, one row per checkpoint
        self.log: list[dict] = []  # RUN/ckpt/train_log.parquet, one row per step
        # the loop: (step, lr, loss, grad norm) still on the device, losses since the last checkpoint
        self.pending: list[tuple] = []
        self.window: list[float] = []
        self.ckpt_seconds, self.bar = 0.0, None  # seconds spent in `checkpoint` (left out of the rate)
        self.t0 = self.t_warm = self.t_start
        self.ckpt_warm, self.warm_at, self.loop_seconds, self.seconds = 0.0, 0, 0.0, 0.0
        self.avg: WeightAverage | None = None  # train.avg (rank 0 only): the averaged weights

    # ------------------------------------------------------------------------- setup and resume

    def setup(self, data: TrainData) -> None:
        """Device and dtype, the model (with the weights it resumes or starts from), FSDP/DDP
        wrapping, compile and the optimizer."""
        import torch

        tc, mc = self.tc, self.cfg.model
        self.data = data
        if tc.threads:
            torch.set_num_threads(tc.threads)
        self.device = dist.device_for(resolve_device(tc.device), self.d)
        model = build_model(mc, data.vocab_size, self.cfg.seed, eos_id=data.eos_id).to(self.device)
        self.n_params = non_embedding_params(model)
        # weights to continue from go into the whole model before it is wrapped or sharded
        start_weights = self.start_weights()
        self.precision = self.choose_precision()  # after start_weights: it knows whether this resumes
        self.amp = self.precision.amp()
        if start_weights is not None:
            load_weights(model, start_weights, mc.tie_embeddings)
        if self.device.startswith("cuda"):
            torch.set_float32_matmul_precision("high")  # TF32 for whatever runs outside autocast
        if tc.avg == "ema" and self.d.main:  # a copy of the start weights, before compile and DDP
            self.avg = WeightAverage(model, tc.avg_sigma_rel)
        self.model, self.net = wrap_model(model, self.tc, self.device, self.d)
        self.fpt = flops_per_token(self.n_params, data.vocab_size, mc.hidden_size, mc.num_layers, tc.seq_len)
        self.peak = peak_flops(self.device)
        decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
        no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
        self.opt = torch.optim.AdamW([{"params": decay, "weight_decay": tc.weight_decay},
                                      {"params": no_decay, "weight_decay": 0.0}],
                                     lr=tc.lr_peak, betas=(tc.beta1, tc.beta2), eps=1e-8,
                                     fused=self.device.startswith("cuda"))
        self.sync_every = SYNC_EVERY_GPU if self.device.startswith("cuda") else 1

    def start_weights(self) -> Path | None:
        """The checkpoint folder whose weights training starts from (None: the seeded init): the
        newest checkpoint when resuming, else train.init_from's. Sets `resuming` and `init_src`."""
        self.resuming = self.run.train_state.is_file()
        self.init_src = init_path(self.tc.init_from, self.init_root) if not self.resuming else None
        if self.resuming:
            return self.run.ckpt(state_step(self.run.train_state))
        return self.init_src

    def choose_precision(self) -> precision.Precision:
        """The dtype to train in: the one recorded in the manifest when this run has trained before
        (a resume or a zoom stays the same run, even on a machine where `auto` would choose
        another), else train.dtype resolved on this device (precision.choose). Printed once."""
        prev = load_manifest(self.run)["stages"].get("train") if self.run.manifest.is_file() else None
        recorded = (prev or {}).get("precision", {}).get("dtype") or (prev or {}).get("summary", {}).get("dtype")
        if recorded is None and self.resuming and self.tc.dtype == "auto" and not self.device.startswith("cuda"):
            recorded = "bf16"  # an interrupted run of an earlier tokenclock, whose auto was bf16 on every CPU
        now = precision.choose(self.tc.dtype, self.device)
        if recorded is None or recorded == now.dtype:
            if self.d.main:
                precision.say("train.dtype", now)
            return now
        kept = precision.Precision(recorded, f"kept from this run's manifest (it trained in {recorded}); "
                                             f"here {self.tc.dtype} would give {now.dtype} ({now.reason})")
        if self.d.main:
            precision.say("train.dtype", kept)
        return kept

    def resume(self) -> None:
        """Where training starts: the newest checkpoint with an optimizer state (its AdamW moments,
        cum_lr, and the index and train-log rows up to it), else train.init_from's checkpoint (its
        step, cum_lr and, when kept, optimizer state: a branch), else step 0."""
        run = self.run
        if self.resuming:
            self.start, extra = load_state(run.train_state, self.opt)
            self.cum_lr = extra.get("cum_lr", 0.0)
            self.rows = read_rows(run.ckpt_index, lambda s: s <= self.start)
            self.log = read_rows(run.train_log, lambda s: s < self.start)
        elif self.init_src is not None:
            src = self.init_src
            side = read_json(ckpt_sidecar(src)) if ckpt_sidecar(src).is_file() else {}
            self.start, self.cum_lr = int(side.get("step", 0)), float(side.get("cum_lr", 0.0))
            if ckpt_optimizer(src).is_file():
                self.start, extra = load_state(ckpt_optimizer(src), self.opt)
                self.cum_lr = extra.get("cum_lr", self.cum_lr)
            else:
                print(f"tokenclock: warning: {src} has no {ckpt_optimizer(src).name}; AdamW starts fresh "
                      "(set train.keep_state_steps in the source run to keep it)")
            if self.start >= self.tc.steps:
                raise ConfigError(f"train.init_from is at step {self.start}, not before train.steps={self.tc.steps}")
        if self.avg is not None:
            self.avg.resume(self.run.series(AVG).ckpt(self.start) if self.resuming else None,
                            self.init_src, self.cfg.model.tie_embeddings)

    # ------------------------------------------------------------------------- the loop

    def loop(self) -> None:
        """The first checkpoint (step 0, or a branch's start) when missing, then the steps from
        `start` to train.steps, reading losses back every `sync_every` steps and checkpointing at
        the scheduled steps; times the steady rate (after WARM_STEPS, checkpoints excluded)."""
        import torch
        from tqdm.auto import tqdm

        tc, start = self.tc, self.start
        if self.init_src is not None or (start == 0 and not self.run.ckpt(0).is_dir()):
            self.checkpoint(start, float("nan"), 0.0)
        self.model.train()
        self.t0, self.window, self.pending, self.ckpt_seconds = time.time(), [], [], 0.0
        self.warm_at = start + WARM_STEPS if tc.steps - start > 2 * WARM_STEPS else start
        self.t_warm, self.ckpt_warm = self.t0, 0.0
        self.bar = tqdm(total=tc.steps, initial=start, desc="train", unit="step", disable=not self.progress,
                        dynamic_ncols=True)
        for step in range(start, tc.steps):
            if step == self.warm_at and step > start:
                if self.device.startswith("cuda"):
                    torch.cuda.synchronize(self.device)
                self.t_warm, self.ckpt_warm = time.time(), self.ckpt_seconds
            self.step(step)
            if len(self.pending) >= self.sync_every or step + 1 in self.ckpts or step + 1 == tc.steps:
                self.flush()
            if step + 1 in self.ckpts:
                self.checkpoint(step + 1, float(np.mean(self.window)), time.time() - self.t_start)
                self.window = []
        self.bar.close()
        self.loop_seconds = time.time() - self.t_warm - (self.ckpt_seconds - self.ckpt_warm)
        dist.barrier()
        self.seconds = time.time() - self.t_start

    def offsets(self, step: int) -> np.ndarray:
        """Start offsets of the global batch of update `step`: the data schedule's row, or the
        seeded uniform draw."""
        if self.data.schedule is not None:
            return self.data.schedule[step]
        seed = self.cfg.seed if self.tc.data_seed is None else self.tc.data_seed
        return batch_offsets(seed, step, len(self.data.stream), self.tc.batch_size, self.tc.seq_len)

    def step(self, step: int):
        """One update: the lr of `step`, this rank's share of its batch in n_micro forward and
        backward passes (gradients sync on the last pass only), clipping, AdamW. Queues (step, lr,
        loss, grad norm) for `flush` and returns the loss, a device tensor (no host sync)."""
        import torch

        tc, d = self.tc, self.d
        lr = tc.lr(step)
        for g in self.opt.param_groups:
            g["lr"] = lr
        batch = make_batch(self.data.stream, self.offsets(step)[d.rank::d.world], tc.seq_len)
        wts = step_weights(self.data.token_weights, step, self.d.rank, self.d.world)
        self.opt.zero_grad(set_to_none=True)
        loss_sum = None
        for i in range(self.n_micro):  # gradient accumulation
            loss = self._pass(batch[i * self.micro:(i + 1) * self.micro], last=i == self.n_micro - 1,
                              wts=None if wts is None else wts[i * self.micro:(i + 1) * self.micro])
            loss_sum = loss if loss_sum is None else loss_sum + loss
        gnorm = torch.nn.utils.clip_grad_norm_(self.model.parameters(),
                                               tc.grad_clip if tc.grad_clip > 0 else float("inf"))
        gnorm = gnorm.full_tensor() if hasattr(gnorm, "full_tensor") else gnorm
        self.opt.step()
        if self.avg is not None:
            self.avg.update(step + 1)
        self.cum_lr += lr
        self.pending.append((step, lr, loss_sum, gnorm.detach()))
        return loss_sum

    def _pass(self, mb, last: bool, wts=None):
        """Forward and backward of one micro batch; returns its (detached) share of the loss, the
        plain mean even when `wts` (micro, seq_len) weighs the gradient's. DDP and FSDP sync
        gradients only on the `last` pass of a step."""
        import torch

        model, net, amp, device = self.model, self.net, self.amp, self.device
        mb = mb.to(device, non_blocking=True)
        if self.tc.fsdp and self.n_micro > 1:
            model.set_requires_gradient_sync(last)
        ctx = net.no_sync() if (net is not model and not last) else contextlib.nullcontext()
        with ctx:
            with torch.autocast(device.split(":")[0], dtype=amp or torch.float32, enabled=amp is not None):
                logits = net(input_ids=mb[:, :-1]).logits
            if wts is None:
                loss = torch.nn.functional.cross_entropy(logits.float().reshape(-1, logits.size(-1)),
                                                         mb[:, 1:].reshape(-1))
                shown = loss
            else:  # mean of weight x token loss; the weights average 1 over the global batch
                ce = torch.nn.functional.cross_entropy(logits.float().reshape(-1, logits.size(-1)),
                                                       mb[:, 1:].reshape(-1), reduction="none")
                loss, shown = (ce * wts.to(device).reshape(-1)).mean(), ce.detach().mean()
            if self.n_micro > 1:
                loss, shown = loss / self.n_micro, shown / self.n_micro
            loss.backward()
        return shown.detach()

    def flush(self) -> None:
        """Read the pending losses and gradient norms back from the device (averaged over ranks):
        stop on a non-finite loss, add them to the train log, and update the progress bar."""
        import torch

        if not self.pending:
            return
        losses = torch.stack([p[2] for p in self.pending]).float()
        if self.d.enabled:
            losses = dist.mean_over_ranks(losses)
        norms = torch.stack([p[3].float() for p in self.pending]).tolist()
        for (st, lr_st, _, _), lval, gn in zip(self.pending, losses.tolist(), norms):
            if not math.isfinite(lval):
                raise TrainingError(f"training loss is {lval} at step {st}: training diverged", DIVERGED_HINT)
            self.window.append(lval)
            self.log.append({"step": st, "loss": lval, "lr": lr_st, "grad_norm": gn})
        if self.progress and self.bar is not None:
            el = time.time() - self.t0 - self.ckpt_seconds
            rate = (self.pending[-1][0] + 1 - self.start) * self.tc.tokens_per_step / max(el, 1e-9)
            post = {"loss": f"{self.log[-1]['loss']:.3f}", "tok_s": f"{rate:,.0f}"}
            if self.peak:
                post["mfu"] = f"{rate * self.fpt / (self.peak * self.d.world):.0%}"
            self.bar.set_postfix(post)
            self.bar.update(len(self.pending))
        self.pending.clear()

    # ------------------------------------------------------------------------- checkpoints

    def checkpoint(self, step: int, train_loss: float, seconds: float) -> None:
        """Score the validation batch and write checkpoint `step` (weights, index row, train log,
        optimizer state); its time is left out of the steady rate. Under FSDP every rank joins the
        validation forward and the gathers; only rank 0 writes."""
        t_ckpt = time.time()
        try:
            self._checkpoint(step, train_loss, seconds)
        finally:
            self.ckpt_seconds += time.time() - t_ckpt

    def _checkpoint(self, step: int, train_loss: float, seconds: float) -> None:
        if not (self.d.main or self.tc.fsdp):
            dist.barrier()
            return
        vl = self.val_loss()  # with FSDP the forward and the gathers below are collectives
        full_sd, opt_full = gather_full(self.model, self.opt, self.cfg.model.tie_embeddings) if self.tc.fsdp else (None, None)
        if not self.d.main:
            dist.barrier()
            return
        if not math.isfinite(vl):
            raise TrainingError(f"validation loss is {vl} at step {step}: training diverged", DIVERGED_HINT)
        row = {"step": step, "tokens_seen": step * self.tc.tokens_per_step, "lr": self.tc.lr(step),
               "cum_lr": self.cum_lr, "train_loss": train_loss, "val_loss": vl, "seconds": seconds}
        self.save(step, row, full_sd, opt_full)
        dist.barrier()

    def save(self, step: int, row: dict, full_sd: dict | None, opt_full: dict | None) -> None:
        """Rank 0 writes checkpoint `step`: its folder, the index row, the train log, the resume
        state, and the kept optimizer state when train.keep_state_* names the step."""
        save_checkpoint(self.run, self.model, self.data.hf_tok, step, row | {"n_params": self.n_params},
                        state_dict=full_sd)
        self.save_average(step, row)
        self.rows.append(row)
        write_parquet(self.run.ckpt_index, {k: [r[k] for r in self.rows] for k in row})
        if self.log:
            write_parquet(self.run.train_log, {k: [r[k] for r in self.log] for k in self.log[0]})
        save_state(self.run.train_state, self.opt, step, {"cum_lr": self.cum_lr}, opt_full)
        if self.tc.keeps_state(step):
            save_state(self.run.ckpt_optimizer(step), self.opt, step, {"cum_lr": self.cum_lr}, opt_full)

    def save_average(self, step: int, row: dict, final: Path | None = None) -> None:
        """The averaged weights of checkpoint `step` into ckpt_avg/step_X/ (or `final`), before the
        resume state that points at it."""
        if self.avg is not None:
            save_checkpoint(self.run.series(AVG), self.avg.model, self.data.hf_tok, step,
                            row | {"n_params": self.n_params, "weights": AVG, "average": self.avg.info()},
                            final=final)

    def val_loss(self) -> float:
        """Mean loss of the validation batch under the current weights."""
        import torch

        self.model.eval()
        with torch.no_grad():
            vl = float(token_losses(self.model, self.data.val_batch, self.amp, self.device).mean())
        self.model.train()
        return vl

    # ------------------------------------------------------------------------- summary

    def summary(self) -> dict:
        """The train stage's summary (manifest and return value), after `loop`."""
        tc, tps, d = self.tc, self.tc.tokens_per_step, self.d
        trained = tc.steps - self.start
        loop_rate = (tc.steps - self.warm_at) * tps / max(self.loop_seconds, 1e-9) if trained else None
        return {"steps": tc.steps, "n_checkpoints": len(self.run.ckpt_steps()), "n_params": self.n_params,
                "final_val_loss": self.rows[-1]["val_loss"] if self.rows else None,
                "tokens_seen": tc.steps * tps, "epochs": round(tc.epochs(self.data.train_tokens), 3),
                "world_size": d.world,
                "tokens_per_second": trained * tps / max(self.seconds, 1e-9) if trained else None,
                # the training loop alone (checkpoint writes, validation and the first
                # WARM_STEPS steps excluded), and its model FLOPs utilisation against the
                # device's dense bf16 peak (GPU only)
                "loop_tokens_per_second": loop_rate, "flops_per_token": self.fpt,
                "mfu": loop_rate * self.fpt / (self.peak * d.world) if (self.peak and loop_rate) else None,
                "device": self.device, "dtype": self.precision.dtype, "precision": self.precision.record(),
                "micro_batches": self.n_micro, "compiled": tc.compile, "resumed_from": self.start,
                "average": self.avg.info() if self.avg is not None else None,
                **weights_summary(self.data.token_weights, self.tc.steps)}

