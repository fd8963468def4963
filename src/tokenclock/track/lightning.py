"""The Lightning adapter: a `lightning.pytorch.Callback` that runs a Tracker inside `Trainer.fit`
(scores at the start and after every optimizer step the schedule names), keeps the tracker's
state in Lightning's checkpoints (so `fit(ckpt_path=...)` resumes the trace exactly) and closes it
when fitting ends. Needs `pip install tokenclock[lightning]`.
"""
from __future__ import annotations

from pathlib import Path

try:
    from lightning.pytorch import Callback
except ImportError:  # pragma: no cover - the extra is not installed
    from tokenclock.errors import ConfigError

    raise ConfigError("tokenclock.track.LightningCallback needs Lightning",
                      "pip install 'tokenclock[lightning]'") from None

from tokenclock.track.tracker import Tracker


class LightningCallback(Callback):
    """`Trainer(callbacks=[tc.track.LightningCallback("runs/mine", val=...)])`: the trace of the
    LightningModule in runs/mine/trace/. Keyword arguments go to `Tracker` (steps defaults to the
    Trainer's max_steps, log-spaced); the module is called as module(input_ids) unless `forward=`
    says otherwise; `tokens_per_step` gives tokens_seen = step * tokens_per_step."""

    def __init__(self, out: str | Path, val, *, tokens_per_step: int | None = None, **tracker_kwargs):
        self.out, self.val, self.kwargs = out, val, tracker_kwargs
        self.tokens_per_step = tokens_per_step
        self.tracker: Tracker | None = None
        self._state: dict | None = None  # restored from a Lightning checkpoint before fit starts
        self._last = -1

    def on_train_start(self, trainer, pl_module) -> None:
        kwargs = dict(self.kwargs)
        if trainer.max_steps and trainer.max_steps > 0:
            kwargs.setdefault("steps", trainer.max_steps)
        self.tracker = Tracker(self.out, pl_module, self.val, **kwargs)
        if self._state is not None:
            self.tracker.load_state_dict(self._state)
        self._step(trainer)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self._step(trainer)  # with gradient accumulation global_step moves every few batches

    def on_train_end(self, trainer, pl_module) -> None:
        if self.tracker is not None:
            self.tracker.close()

    def on_exception(self, trainer, pl_module, exception) -> None:
        if self.tracker is not None and not self.tracker.closed:
            self.tracker.__exit__(type(exception), exception, exception.__traceback__)

    def _step(self, trainer) -> None:
        step = trainer.global_step
        if step == self._last:
            return
        self._last = step
        opts = trainer.optimizers
        lr = opts[0].param_groups[0]["lr"] if opts else None
        tokens = step * self.tokens_per_step if self.tokens_per_step else None
        self.tracker.step(step, tokens_seen=tokens, lr=lr)

    def state_dict(self) -> dict:
        return self.tracker.state_dict() if self.tracker is not None else (self._state or {})

    def load_state_dict(self, state_dict: dict) -> None:
        self._state = dict(state_dict)
