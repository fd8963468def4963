"""The replay zoom: re-runs steps S..E of a finished run from a kept training state exactly as the
run did, and adds the checkpoints of a denser log-spaced schedule inside [A, B] (train.zoom) to
RUN/ckpt/ and ckpt/index.parquet; the train log and the resume state are not touched.

Reads the run's kept optimizer states (ckpt/step_S/optimizer.safetensors; or its own start: the
seeded init with a fresh AdamW, or train.init_from), its checkpoints and train_log.parquet. New
checkpoints are written under RUN/ckpt/.zoom/ and move into ckpt/ only once the replay has matched
the next checkpoint of the series bit for bit (and every train loss on the way); each zoom is
recorded in manifest.json under stages.train.zooms. A killed zoom reruns from S and ends the same.
"""
from __future__ import annotations

import contextlib
import math
import os
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from tokenclock import dist
from tokenclock.artifacts import read_json, write_parquet
from tokenclock.errors import ConfigError, RunDirError, TrainingError
from tokenclock.lock import run_lock
from tokenclock.manifest import load_manifest, update_stage
from tokenclock.rundir import AVG, RunDir, avg_sibling, ckpt_optimizer, ckpt_sidecar
from tokenclock.stages.train.checkpoint import (
    load_state,
    optimizer_tensors,
    read_rows,
    save_checkpoint,
    save_state,
)
from tokenclock.stages.train.config import DATA_ORDER_VERSION, TrainConfig, init_path
from tokenclock.stages.train.schedule import zoom_steps
from tokenclock.stages.train.train_data import TrainData
from tokenclock.stages.train.trainer import Trainer
from tokenclock.stages.train.wrap import gather_full

REPLAY_HINT = ("replay where and how the run was trained (same device type, dtype, processes and "
               "tokenclock version); the checkpoints it already had are unchanged")
KEEP_HINT = "train.keep_state_steps=[...] or train.keep_state_all=true"


@dataclass
class ZoomPlan:
    """What one zoom replays and what it adds (recorded in the manifest with its seconds)."""

    interval: list[int]
    """[A, B] (train.zoom)."""
    ckpt_per_decade: int
    """Density of the denser schedule inside [A, B]."""
    start_step: int
    """S: the newest step at or before A with a training state; the replay starts there."""
    end_step: int
    """E: the first checkpoint of the series at or after the last new step; the replay stops there."""
    start_state: str
    """Where S's state comes from: a kept optimizer.safetensors, `seeded init` (step 0, fresh
    AdamW) or train.init_from's checkpoint."""
    new_steps: list[int]
    """Every step this zoom adds to the series (a killed try may have moved some into ckpt/ already)."""
    to_write: list[int]
    """The new steps ckpt/ does not hold yet: what this replay writes."""
    weights: str | None = None
    """The folder S's weights load from (None: the seeded init)."""
    state: str | None = None
    """The optimizer state S loads (None: a fresh AdamW)."""


def zoom(run: RunDir, cfg, data: TrainData, d: dist.Dist, *, progress: bool = True,
         init_root: str | Path | None = None) -> dict:
    """Replay the finished run over cfg.train.zoom and add the denser checkpoints; returns the
    zoom's record (also appended to stages.train.zooms in the manifest)."""
    tc = cfg.train
    entry = load_manifest(run)["stages"].get("train", {})
    check_replayable(run, entry, d)
    plan = plan_zoom(run, tc, entry, init_root)
    record = {k: v for k, v in asdict(plan).items() if k not in ("to_write", "weights", "state")}
    if not plan.new_steps:
        if d.main:
            print(f"tokenclock: zoom {plan.interval[0]}:{plan.interval[1]} at {plan.ckpt_per_decade} per decade "
                  "adds nothing: ckpt/ holds every step of it already")
        return {**record, "seconds": 0.0}
    t0 = time.time()
    with run_lock(run, "train") if d.main else contextlib.nullcontext():
        replay = None
        if plan.to_write:
            if d.main:
                shutil.rmtree(run.ckpt_staging, ignore_errors=True)  # left by a killed zoom
            dist.barrier()
            replay = Replay(run, cfg, d, plan, progress=progress, init_root=init_root)
            try:
                replay.setup(data)
                replay.check_device(entry.get("summary", {}))
                replay.resume()
                replay.loop()
            finally:
                if d.main:  # what was not matched is not kept
                    shutil.rmtree(run.ckpt_staging, ignore_errors=True)
        if d.main:
            merge_index(run)
            record |= {"seconds": round(time.time() - t0, 3), "steps_replayed": plan.end_step - plan.start_step,
                       "matched_steps": replay.matched if replay else [], "data_order_version": DATA_ORDER_VERSION}
            zooms = load_manifest(run)["stages"]["train"].get("zooms", [])
            update_stage(run, "train", "done", zooms=zooms + [record])
    dist.barrier()
    return record


def check_replayable(run: RunDir, entry: dict, d: dist.Dist) -> None:
    """Refuse a run this tokenclock cannot replay bit for bit: no recorded data order or another
    one (an older version), or another number of processes."""
    version = entry.get("data_order_version")
    if version is None:
        raise RunDirError(f"{run.root} was trained by a tokenclock that did not record its data order "
                          "(manifest.json: stages.train.data_order_version), so a replay cannot be held to it",
                          f"retrain it into a new --out with this tokenclock (data order {DATA_ORDER_VERSION}), "
                          "then zoom")
    if version != DATA_ORDER_VERSION:
        raise RunDirError(f"{run.root} was trained with data order {version}; this tokenclock replays data "
                          f"order {DATA_ORDER_VERSION}, whose batches differ",
                          "zoom with the tokenclock version that trained it, or retrain into a new --out")
    world = int(entry.get("world_size", 1))
    if world != d.world:
        raise ConfigError(f"{run.root} was trained by {world} process(es); a replay by {d.world} would sum "
                          "gradients in another order",
                          f"torchrun --nproc_per_node={world} -m tokenclock train ..." if world > 1
                          else "run the zoom without torchrun")


def plan_zoom(run: RunDir, tc: TrainConfig, entry: dict, init_root: str | Path | None = None) -> ZoomPlan:
    """The denser steps inside tc.zoom, where the replay starts (the newest state at or before A)
    and where it stops; refuses an interval before the run's first checkpoint or without a state."""
    a, b = tc.zoom
    n = tc.zoom_per_decade()
    on_disk = run.ckpt_steps()
    if not on_disk:
        raise RunDirError(f"{run.ckpt_dir} holds no checkpoints", "train the run before zooming")
    first = on_disk[0]
    if a < first:
        raise ConfigError(f"train.zoom {a}:{b} is outside the run: its checkpoints start at step {first}",
                          f"pick A >= {first}")
    # the run's own schedule: zoomed steps refine it, whatever zooms came before
    base = sorted({s for s in tc.ckpt_steps() if s >= first} | {first})
    grid = zoom_steps(base, a, b, n)
    earlier = {s for z in entry.get("zooms", []) for s in z.get("new_steps", [])}
    have = set(on_disk)
    to_write = [s for s in grid if s not in have]
    start, source, weights, state = _start_state(run, tc, a, first, init_root)
    last = max(to_write or grid or [start])
    after = [s for s in on_disk if s >= last]
    if not after:
        raise RunDirError(f"{run.ckpt_dir} has no checkpoint at or after step {last} to match the replay to",
                          "the run's final checkpoint is missing: resume training first")
    return ZoomPlan(interval=[a, b], ckpt_per_decade=n, start_step=start, end_step=after[0], start_state=source,
                    new_steps=[s for s in grid if s not in earlier], to_write=to_write, weights=weights, state=state)


def _start_state(run: RunDir, tc: TrainConfig, a: int, first: int, init_root) -> tuple:
    """(S, where its state comes from, weights folder, optimizer state): the newest kept
    ckpt/step_S/optimizer.safetensors with S <= a, or the run's own start when that is newer."""
    kept = [s for s in run.ckpt_steps() if run.ckpt_optimizer(s).is_file()]
    below = [s for s in kept if s <= a]
    best = None
    if below:
        s = max(below)
        best = (s, str(run.ckpt_optimizer(s).relative_to(run.root)), str(run.ckpt(s)), str(run.ckpt_optimizer(s)))
    src = init_path(tc.init_from, init_root)
    if src is None:
        origin = (0, "seeded init, fresh AdamW", None, None)
    elif src.is_dir():
        side = read_json(ckpt_sidecar(src)) if ckpt_sidecar(src).is_file() else {}
        opt = ckpt_optimizer(src)
        origin = (int(side.get("step", first)), f"train.init_from {src}", str(src),
                  str(opt) if opt.is_file() else None)
    else:
        origin = None
    if origin is not None and origin[0] <= a and (best is None or origin[0] > best[0]):
        best = origin
    if best is None:
        have = ", ".join(map(str, kept)) if kept else "none"
        gone = f"; its start, train.init_from {src}, is gone" if src is not None and origin is None else ""
        raise RunDirError(f"{run.root} kept no training state at or before step {a} (steps with one: {have}{gone})",
                          f"zoom from a step that has one, or keep more when training: {KEEP_HINT}")
    return best


def merge_index(run: RunDir) -> None:
    """Give ckpt/index.parquet a row for every checkpoint folder it lacks (from the folder's
    sidecar), sorted by step; rows are never dropped or rewritten."""
    rows = {int(r["step"]): r for r in read_rows(run.ckpt_index, lambda s: True)}
    missing = [s for s in run.ckpt_steps() if s not in rows and ckpt_sidecar(run.ckpt(s)).is_file()]
    if not missing or not rows:
        return
    cols = list(next(iter(rows.values())))
    for s in missing:
        side = read_json(run.ckpt_sidecar(s))
        rows[s] = {k: side.get(k, math.nan) for k in cols}
    ordered = [rows[s] for s in sorted(rows)]
    write_parquet(run.ckpt_index, {k: [r[k] for r in ordered] for k in cols})


class Replay(Trainer):
    """A Trainer that starts at a plan's S and stops at its E: it writes the new steps under
    ckpt/.zoom/, matches every train loss and every checkpoint of the series on the way (weights,
    and the optimizer state where one is kept), and moves what it wrote into ckpt/ after each match."""

    def __init__(self, run: RunDir, cfg, d: dist.Dist, plan: ZoomPlan, *, progress: bool = False,
                 init_root: str | Path | None = None):
        super().__init__(run, cfg, d, progress=progress, init_root=init_root)
        self.plan = plan
        self.series = {s for s in run.ckpt_steps() if plan.start_step < s <= plan.end_step}
        self.ckpts = set(plan.to_write) | self.series
        self.staged: list[int] = []  # written under ckpt/.zoom/, not matched yet
        self.matched: list[int] = []  # checkpoints of the series the replay reproduced

    def start_weights(self) -> Path | None:
        self.resuming, self.init_src = False, None
        return Path(self.plan.weights) if self.plan.weights else None

    def check_device(self, summary: dict) -> None:
        """Refuse a replay on another device type or dtype than the run's (they round differently)."""
        dev, dtype = summary.get("device"), summary.get("dtype")
        mine = "bf16" if self.amp is not None else "fp32"
        if dev and (dev.split(":")[0] != self.device.split(":")[0] or (dtype and dtype != mine)):
            raise ConfigError(f"{self.run.root} was trained on {dev} in {dtype}; this replay would run on "
                              f"{self.device} in {mine}, which rounds differently",
                              f"--set train.device={dev.split(':')[0]} --set train.dtype={dtype}")

    def resume(self) -> None:
        """S's optimizer state (or a fresh AdamW) and cum_lr, as the original run had them at S."""
        p = self.plan
        side = ckpt_sidecar(p.weights) if p.weights else None
        meta = read_json(side) if side is not None and side.is_file() else {}
        self.start, self.cum_lr = p.start_step, float(meta.get("cum_lr", 0.0))
        if p.state is not None:
            self.start, extra = load_state(Path(p.state), self.opt)
            self.cum_lr = extra.get("cum_lr", self.cum_lr)
        if self.start != p.start_step:
            raise RunDirError(f"{p.state} holds the state of step {self.start}, not {p.start_step}",
                              "the kept state was overwritten: retrain the run into a new --out")
        if self.avg is not None and p.weights:  # the averaged weights at S (train.avg)
            sib = avg_sibling(p.weights)
            if not sib.is_dir():
                raise RunDirError(f"{sib} is missing, so the averaged weights cannot be replayed from step "
                                  f"{p.start_step}", "the run was trained without train.avg: keep its setting")
            self.avg.load(sib, self.cfg.model.tie_embeddings)

    def loop(self) -> None:
        from tqdm.auto import tqdm

        p, run = self.plan, self.run
        logged = {int(r["step"]): r["loss"] for r in read_rows(run.train_log,
                                                               lambda s: p.start_step <= s < p.end_step)}
        checked = 0
        self.model.train()
        self.t0 = self.t_warm = time.time()
        self.bar = tqdm(total=p.end_step, initial=p.start_step, desc="zoom", unit="step",
                        disable=not self.progress, dynamic_ncols=True)
        for step in range(p.start_step, p.end_step):
            self.step(step)
            if len(self.pending) >= self.sync_every or step + 1 in self.ckpts:
                self.flush()
                checked = self._match_log(logged, checked)
            if step + 1 in self.series:
                self.match(step + 1)
                self.window = []
            elif step + 1 in self.ckpts:
                self.checkpoint(step + 1, float(np.mean(self.window)) if self.window else math.nan, math.nan)
                self.window = []
        self.bar.close()
        dist.barrier()
        self.seconds = time.time() - self.t_start

    def _match_log(self, logged: dict, checked: int) -> int:
        """Stop at the first replayed train loss that differs from the train log's (every rank)."""
        for r in self.log[checked:]:
            want = logged.get(r["step"])
            if want is not None and r["loss"] != want:
                raise TrainingError(f"the replay differs from the original run at step {r['step']} (train loss "
                                    f"{r['loss']!r}, the train log has {want!r})", REPLAY_HINT)
        return len(self.log)

    def save(self, step: int, row: dict, full_sd: dict | None, opt_full: dict | None) -> None:
        """A new checkpoint goes under ckpt/.zoom/ until the next match (its seconds are NaN: the
        original run never reached it)."""
        folder = self.run.ckpt_staged(step)
        save_checkpoint(self.run, self.model, self.data.hf_tok, step, row | {"n_params": self.n_params},
                        state_dict=full_sd, final=folder)
        if self.tc.keeps_state(step):
            save_state(ckpt_optimizer(folder), self.opt, step, {"cum_lr": self.cum_lr}, opt_full)
        self.save_average(step, row, final=self.run.series(AVG).ckpt_staged(step))
        self.staged.append(step)

    def match(self, step: int) -> None:
        """Compare the weights (and a kept optimizer state) with checkpoint `step` of the series,
        bit for bit; on a match, move the staged checkpoints into ckpt/ and index them. A step that
        train.keep_state_* names and that has no state yet gets it (a zoom can keep more)."""
        if not (self.d.main or self.tc.fsdp):
            dist.barrier()
            return
        full_sd, opt_full = gather_full(self.model, self.opt, self.cfg.model.tie_embeddings) if self.tc.fsdp else (None, None)
        if not self.d.main:
            dist.barrier()
            return
        from safetensors.torch import load_file

        sd = full_sd if full_sd is not None else self.model.state_dict()
        _same(load_file(str(self.run.ckpt(step) / "model.safetensors")), sd, f"checkpoint {step}")
        avg = self.run.series(AVG)
        if self.avg is not None:
            _same(load_file(str(avg.ckpt(step) / "model.safetensors")), self.avg.model.state_dict(),
                  f"the averaged weights of {step}")
        kept = self.run.ckpt_optimizer(step)
        if kept.is_file():
            _same(load_file(str(kept)), opt_full or optimizer_tensors(self.opt), f"the optimizer state of {step}")
        elif self.tc.keeps_state(step):
            save_state(kept, self.opt, step, {"cum_lr": self.cum_lr}, opt_full)
        for s in self.staged:
            os.replace(self.run.ckpt_staged(s), self.run.ckpt(s))
            if self.avg is not None:
                avg.weights_dir.mkdir(exist_ok=True)
                os.replace(avg.ckpt_staged(s), avg.ckpt(s))
        self.staged = []
        merge_index(self.run)
        self.matched.append(step)
        dist.barrier()


def _same(saved: dict, mine: dict, what: str) -> None:
    """Raise TrainingError unless every tensor of `saved` equals the one of `mine` bit for bit."""
    import torch

    bad = [k for k in saved if k not in mine or not torch.equal(saved[k], mine[k].detach().cpu())]
    if bad:
        raise TrainingError(f"the replay differs from the original run at {what} ({len(bad)} of {len(saved)} "
                            f"tensors, e.g. {bad[0]})", REPLAY_HINT)
