"""The in-loop tracker: rides along a user's own training loop and, at scheduled steps, scores fixed
validation windows with the live model, appending one row per step to OUT/trace/ (and, with
avg=True, the power-function EMA of the weights to OUT/trace_avg/), the trace `tokenclock fit`,
`spectrum`, `report` and `explore` read. Holds OUT/.lock while it lives; resumes a trace it wrote.
torch is imported inside the methods.
"""
from __future__ import annotations

import atexit
import hashlib
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np

from tokenclock import dist
from tokenclock.errors import ConfigError, DataError, RunDirError, TokenizerError
from tokenclock.rundir import AVG, RAW, RunDir
from tokenclock.track.inputs import table_tokenizer, val_inputs
from tokenclock.track.live_model import (
    Logits,
    context_of,
    default_forward,
    model_fingerprint,
    unwrap,
    vocab_size_of,
)
from tokenclock.track.steps import Schedule
from tokenclock.track.store import TraceStore


class Tracker:
    """Per-token learning curves from any training loop, without checkpoints:

        tracker = tc.Tracker("runs/mine", model, val=val_tokens, steps=total_steps)
        for step in range(total_steps + 1):
            tracker.step(step, tokens_seen=step * batch_tokens, lr=lr)  # model has taken `step` updates
            ...  # one training update with learning rate lr
        tracker.close()

    At each scheduled step the model is put in eval mode, the windows are scored without grad and
    the model's training mode is restored. See docs/guide/track.md for every argument.
    """

    def __init__(self, out: str | Path, model, val, *, steps: int | list[int] | Callable[[int], bool] | None = None,
                 per_decade: int = 16, tokenizer=None, column: str = "text", n_seqs: int = 400,
                 seq_len: int = 256, seed: int = 0, batch_size: int = 32, dtype: str = "auto",
                 forward: Callable | None = None, avg: bool = False, avg_sigma_rel: float = 0.1,
                 checkpoints: bool = False, keep_state_steps: list[int] = (), optimizer=None,
                 context_tokens: int = 8, progress: bool = True):
        import torch

        from tokenclock.forward import trace_dtype

        if n_seqs < 1 or seq_len < 1 or batch_size < 1:
            raise ConfigError("n_seqs, seq_len and batch_size must be >= 1")
        self.model, self.forward = model, forward or default_forward
        self.device = str(next(unwrap(model).parameters()).device)
        self.d = dist.init(self.device)
        self.schedule = Schedule(steps, per_decade)
        self.batch_size, self.progress = batch_size, progress
        self.amp = trace_dtype(dtype, self.device)
        self.inputs, note = val_inputs(val, tokenizer, column=column, n_seqs=n_seqs, seq_len=seq_len, seed=seed)
        n_seqs, width = self.inputs.shape
        self.n_tok = n_seqs * (width - 1)
        self.vocab = vocab_size_of(model, self.forward, self.device)
        top = int(self.inputs.max())
        if top >= self.vocab:
            raise TokenizerError(f"the validation tokens hold id {top}, but the model's vocabulary has {self.vocab} "
                                 "rows", "tokenize the validation text with the model's own tokenizer")
        ctx = context_of(model)
        if ctx is not None and width - 1 > ctx:
            raise ConfigError(f"validation windows of {width - 1} tokens are longer than the model's context "
                              f"({ctx})", f"pass seq_len={ctx} or less")
        self.checkpoints, self.keep_state = checkpoints, set(keep_state_steps)
        self.optimizer, self.tokenizer = optimizer, tokenizer
        if (checkpoints or self.keep_state) and not hasattr(unwrap(model), "save_pretrained"):
            raise ConfigError(f"checkpoints=True writes Hugging Face folders, and {type(unwrap(model)).__name__} "
                              "has no save_pretrained", "use a transformers model, or checkpoints=False")
        if self.keep_state and optimizer is None:
            raise ConfigError("keep_state_steps keeps the optimizer's state and needs optimizer=")
        self.signature = {"inputs_sha256": hashlib.sha256(np.ascontiguousarray(self.inputs).tobytes()).hexdigest(),
                          "n_seqs": int(n_seqs), "seq_len": int(width - 1), "model": model_fingerprint(model)}
        self.config = {"tracker": True, "n_seqs": int(n_seqs), "seq_len": int(width - 1), "seed": seed,
                       "batch_size": batch_size, "dtype": dtype, "schedule": self.schedule.describe(),
                       "forward": "default" if forward is None else getattr(forward, "__name__", "custom"), **note}
        self.run = RunDir(out)
        self.avg = None
        if avg:
            from tokenclock.stages.train.average import WeightAverage

            self.avg = WeightAverage(unwrap(model), avg_sigma_rel)
        self.stores = [TraceStore(self.run, self.n_tok)]
        if self.avg is not None:
            self.stores.append(TraceStore(self.run.series(AVG), self.n_tok))
        self._tokens_local = torch.from_numpy(self.inputs.astype(np.int64))[self.d.rank::self.d.world]
        self._stages: list = []
        self.cum_lr: float | None = None
        self._last_call: tuple[int, float | None] | None = None  # (step, lr) of the previous call
        self.closed, self._loaded = False, False
        self.seconds = {"score": 0.0, "write": 0.0, AVG: 0.0}
        state = dist.run_on_main(lambda: self._open(table_tokenizer(tokenizer, self.vocab), context_tokens))
        self.done = [r["step"] for r in state["rows"]]
        self._record_cum = state.get("cum_lr")
        atexit.register(self.close)  # a loop that ends without close() still records the trace as done
        if progress and self.d.main:
            resumed = f" (resumed: {len(self.done)} rows, last step {self.done[-1]})" if self.done else ""
            print(f"tokenclock: tracking {n_seqs} x {width - 1} validation tokens into {self.run.trace_dir}"
                  f"{' and ' + str(self.run.series(AVG).trace_dir) if self.avg is not None else ''}{resumed}", flush=True)

    # ------------------------------------------------------------------ open / close

    def _open(self, names, context_tokens: int) -> dict:
        """Rank 0: check what is on disk (before writing anything), take OUT/.lock, and open or
        create each series' trace. Returns the raw series' record."""
        for store in self.stores:
            if store.foreign():
                raise RunDirError(f"{store.run.trace_dir} holds a trace that no tracker wrote (tokenclock trace or "
                                  "an import)", "track into another out directory")
            if store.exists():
                self._check_same(store)
        raw_exists = self.stores[0].exists()
        if any(s.exists() != raw_exists for s in self.stores):
            raise RunDirError(f"{self.run.root} has a tracked trace for one weight series but not the other",
                              "resume with the avg setting the trace started with, or use a new out directory")
        for store in self.stores:
            stage = store.run.stage("trace", self.config, writer=True, world_size=self.d.world)
            stage.__enter__()  # OUT/.lock: a second writer is refused here, before any write
            self._stages.append(stage)
        try:
            return self._open_locked(names, context_tokens)
        except BaseException as e:
            self._exit_stages(e)
            raise

    def _open_locked(self, names, context_tokens: int) -> dict:
        from tokenclock.stages.trace.stage import token_table

        first = None
        for store in self.stores:
            if store.exists():
                state = store.open()
            else:
                table = token_table(names, self.inputs, None, context_tokens)
                table["train_count"] = np.full(len(table["tok_idx"]), -1, np.int64)  # no training split known
                table["unigram_loss"] = np.full(len(table["tok_idx"]), np.nan)
                meta = {"n_tok": self.n_tok, "n_ckpt": 0, "vocab_size": self.vocab,
                        "seq_len": self.signature["seq_len"], "n_seqs": self.signature["n_seqs"],
                        "axes": ["step", "tokens_seen", "cum_lr", "val_loss"], "source": "track",
                        "dtype": "bf16" if self.amp is not None else "fp32", "weights": store.run.weights,
                        "average": self.avg.info() if store.run.weights == AVG else None,
                        "model": self.signature["model"]["class"], "val": self.config["val"],
                        "train_counts": False,
                        "train_counts_note": "no training split: train_count is -1 and unigram_loss NaN"}
                store.create({"signature": self.signature, "cum_lr": None}, self.inputs, table, meta)
                state = store.state
            first = first or state
        return first

    def _check_same(self, store: TraceStore) -> None:
        from tokenclock.artifacts import read_json

        old = read_json(store.run.trace_track).get("signature", {})
        new = self.signature
        if old.get("inputs_sha256") != new["inputs_sha256"]:
            raise RunDirError(f"{store.run.trace_dir} traced other validation tokens ({old.get('n_seqs')} x "
                              f"{old.get('seq_len')}, sha256 {str(old.get('inputs_sha256'))[:12]}) than this "
                              f"tracker's ({new['n_seqs']} x {new['seq_len']}, sha256 {new['inputs_sha256'][:12]})",
                              "pass the same val, n_seqs, seq_len and seed, or use a new out directory")
        if old.get("model") != new["model"]:
            raise RunDirError(f"{store.run.trace_dir} traced another model ({old.get('model')}) than this "
                              f"tracker's ({new['model']})", "resume with the same model, or use a new out directory")

    def close(self) -> None:
        """Record the trace as done in the manifest and release OUT/.lock (idempotent)."""
        if not self.closed:
            self.closed = True
            atexit.unregister(self.close)
            self._exit_stages(None)
            if self.progress and self.d.main:
                print(f"tokenclock: traced {len(self.done)} rows into {self.run.trace_dir} (scoring "
                      f"{self.seconds['score']:.1f} s, writing {self.seconds['write']:.1f} s)", flush=True)

    def _exit_stages(self, err) -> None:
        for stage in reversed(self._stages):
            if err is None:
                stage.record(summary={"n_ckpt": len(self.done), "n_tok": self.n_tok, "seconds": self.seconds})
            stage.__exit__(type(err) if err else None, err, err.__traceback__ if err else None)
        self._stages = []

    def __enter__(self) -> "Tracker":
        return self

    def __exit__(self, typ, err, tb) -> bool:
        if err is None:
            self.close()
        else:
            self.closed = True
            atexit.unregister(self.close)
            self._exit_stages(err)
        return False

    # ------------------------------------------------------------------ the loop

    def step(self, step: int, *, tokens_seen: int | None = None, lr: float | None = None,
             cum_lr: float | None = None, force: bool = False) -> bool:
        """Call once per step, when the model has taken `step` optimizer updates (step 0: before
        the first). `lr`: the learning rate of the update that follows (the cumulative lr of a row
        sums the lr of the updates before it; or pass `cum_lr` yourself). Scores and appends a row
        at scheduled steps (or with force=True); returns whether it did."""
        if self.closed:
            raise RunDirError("this tracker is closed", "create a new Tracker to resume the trace")
        step = int(step)
        prev = self._last_call
        if prev is not None and step == prev[0] and self._loaded:
            self._loaded = False
            return False  # the step the loaded state_dict was saved at, called again by the resumed loop
        self._loaded = False
        if prev is not None and step <= prev[0]:
            raise DataError(f"tracker.step({step}) after tracker.step({prev[0]}): steps must increase",
                            "call tracker.step once per step, in order")
        self._advance_lr(step, lr, cum_lr)
        if self.avg is not None:
            t0 = time.perf_counter()
            if step == 0 or (prev is None and not self.done):
                self.avg.reset()
            elif prev is None:
                print("tokenclock: warning: the tracker resumes without its state_dict: the averaged weights "
                      f"restart from the weights at step {step}", file=sys.stderr)
                self.avg.reset()
            elif step > 0:
                self.avg.update(step)
            self.seconds[AVG] += time.perf_counter() - t0
        self._last_call = (step, lr)
        if not (force or self.schedule.wants(step)):
            return False
        if self.done and step <= self.done[-1]:
            if step in self.done:
                return False  # scored before a restart: not scored twice
            raise DataError(f"step {step} is lower than the last traced row (step {self.done[-1]}) of "
                            f"{self.run.trace_dir} and was not traced: rows are appended in step order",
                            f"resume the loop at step {self.done[-1]} or later, or track into a new out directory")
        self._score_and_write(step, tokens_seen)
        return True

    def _advance_lr(self, step: int, lr: float | None, cum_lr: float | None) -> None:
        """cum_lr at `step`: the previous call's lr held over the steps since it (exact when called
        every step; unknown, None, until an lr is given from step 0 on). A resumed tracker without
        its state_dict knows it again when the loop reaches the last traced row."""
        prev = self._last_call
        if cum_lr is not None:
            self.cum_lr = float(cum_lr)
        elif prev is not None:
            if self.cum_lr is not None and prev[1] is not None:
                self.cum_lr += prev[1] * (step - prev[0])
        elif not self.done:
            self.cum_lr = 0.0 if step == 0 and lr is not None else None
        else:
            self.cum_lr = None
            if step > self.done[-1] and self._record_cum is not None:
                print(f"tokenclock: warning: the tracker resumes at step {step}, after its last row (step "
                      f"{self.done[-1]}), without its state_dict: cum_lr is unknown from here (save "
                      "tracker.state_dict() with your checkpoint, or pass cum_lr=)", file=sys.stderr)
        if cum_lr is None and self.done and step == self.done[-1]:
            self.cum_lr = self._record_cum  # a replay reaches the last traced row: its recorded cum_lr

    def _score_and_write(self, step: int, tokens_seen: int | None) -> None:
        models = [self.model] + ([self.avg.model] if self.avg is not None else [])
        for store, model in zip(self.stores, models):
            t0 = time.perf_counter()
            flat = self.score(model)
            t1 = time.perf_counter()
            if not np.isfinite(flat).all():
                bad = int((~np.isfinite(flat)).sum())
                raise DataError(f"step {step} gives {bad} non-finite token losses ({store.run.weights} weights)",
                                "the model diverged; lower the learning rate")
            if self.d.main:
                row = {"step": step, "tokens_seen": None if tokens_seen is None else int(tokens_seen),
                       "cum_lr": self.cum_lr, "val_loss": float(np.mean(flat))}
                store.append(row, flat, {"cum_lr": self.cum_lr}, {})
                if self.checkpoints or step in self.keep_state:
                    self._save_checkpoint(store, model, row)
            self.seconds["score"] += t1 - t0
            self.seconds["write"] += time.perf_counter() - t1
        self.done.append(step)

    def score(self, model) -> np.ndarray:
        """Per-token losses (n_tok,) of `model` on the windows (this rank's share, gathered), in
        eval mode without grad; the model's training mode is restored."""
        from tokenclock.stages.trace.stage import score_windows

        model = unwrap(model)  # DDP's wrapper would sync buffers on each forward: a collective per batch
        was = model.training
        model.eval()
        try:
            return score_windows(Logits(model, self.forward), self._tokens_local, self.inputs.shape[0],
                                 self.batch_size, self.amp, self.device, self.d)
        finally:
            model.train(was)

    def _save_checkpoint(self, store: TraceStore, model, row: dict) -> None:
        """ckpt/step_X/ (or ckpt_avg/) as `tokenclock train` writes it, and the optimizer state
        at keep_state_steps."""
        from tokenclock.forward import quiet_transformers
        from tokenclock.stages.train.checkpoint import save_checkpoint, save_state
        from tokenclock.track.inputs import hf_tokenizer

        quiet_transformers()
        step = row["step"]
        if self.checkpoints:
            tok = hf_tokenizer(self.tokenizer) if self.tokenizer is not None else _NoTokenizer()
            save_checkpoint(store.run, unwrap(model), tok, step, {**row, "weights": store.run.weights})
        if step in self.keep_state and store.run.weights == RAW:
            save_state(self.run.ckpt_optimizer(step), self.optimizer, step, {"cum_lr": self.cum_lr})

    # ------------------------------------------------------------------ resume state

    def state_dict(self) -> dict:
        """What to save with your own checkpoint so a restart continues exactly: the cumulative lr
        and the last call, plus the averaged weights (avg=True)."""
        out = {"cum_lr": self.cum_lr, "last_call": list(self._last_call) if self._last_call else None}
        if self.avg is not None:
            out[AVG] = {k: v.detach().cpu().clone() for k, v in self.avg.model.state_dict().items()}
        return out

    def load_state_dict(self, state: dict) -> None:
        """Continue from `state_dict()` saved with the checkpoint your loop resumes from."""
        self.cum_lr = state.get("cum_lr")
        self._loaded = True
        last = state.get("last_call")
        self._last_call = (int(last[0]), last[1]) if last else None
        if self.avg is not None and AVG in state:
            self.avg.model.load_state_dict(state[AVG])


class _NoTokenizer:
    """save_checkpoint's tokenizer when the tracker has none: writes nothing."""

    def save_pretrained(self, folder) -> None:
        return None
