"""The Hugging Face Trainer adapter: a `transformers.TrainerCallback` that runs a Tracker inside
`Trainer.train()` (scores at step 0 and after every optimizer step the schedule names) and closes
it when training ends. Reads the Trainer's model, tokenizer, lr scheduler and step counters.
"""
from __future__ import annotations

from pathlib import Path

from transformers import TrainerCallback

from tokenclock.track.tracker import Tracker


class LrSum:
    """The cumulative learning rate before each step, exact for the LambdaLR schedules of
    `transformers.get_scheduler` (lr(t) = base_lr * lambda(t), so a resumed run recomputes it);
    other schedulers: None (the Tracker then sums the lr it is given at each call)."""

    def __init__(self, scheduler):
        lambdas = getattr(scheduler, "lr_lambdas", None)
        self.lr = None
        if lambdas and getattr(scheduler, "base_lrs", None):
            base, fn = scheduler.base_lrs[0], lambdas[0]
            self.lr = lambda t: base * fn(t)
        self.upto, self.total = 0, 0.0

    def at(self, step: int) -> float | None:
        if self.lr is None:
            return None
        if step < self.upto:
            self.upto, self.total = 0, 0.0
        while self.upto < step:
            self.total += self.lr(self.upto)
            self.upto += 1
        return self.total


class HFCallback(TrainerCallback):
    """`Trainer(..., callbacks=[tc.track.HFCallback("runs/mine", val=...)])`: the trace of the
    Trainer's model in runs/mine/trace/. Keyword arguments go to `Tracker` (steps defaults to the
    Trainer's max_steps, log-spaced; tokenizer to the Trainer's processing_class);
    `tokens_per_step` gives tokens_seen = step * tokens_per_step (else the Trainer's
    num_input_tokens_seen when args.include_num_input_tokens_seen is on)."""

    def __init__(self, out: str | Path, val, *, tokens_per_step: int | None = None, **tracker_kwargs):
        self.out, self.val, self.kwargs = out, val, tracker_kwargs
        self.tokens_per_step = tokens_per_step
        self.tracker: Tracker | None = None
        self.lrs: LrSum | None = None

    def on_train_begin(self, args, state, control, model=None, lr_scheduler=None, processing_class=None, **kw):
        kwargs = dict(self.kwargs)
        kwargs.setdefault("steps", state.max_steps)
        kwargs.setdefault("tokenizer", processing_class)
        self.tracker = Tracker(self.out, model, self.val, **kwargs)
        self.lrs = LrSum(lr_scheduler)
        self._step(args, state, lr_scheduler)

    def on_step_end(self, args, state, control, lr_scheduler=None, **kw):
        self._step(args, state, lr_scheduler)

    def on_train_end(self, args, state, control, **kw):
        if self.tracker is not None:
            self.tracker.close()

    def _step(self, args, state, scheduler) -> None:
        step = state.global_step
        counted = args.include_num_input_tokens_seen not in (False, None, "no")
        tokens = step * self.tokens_per_step if self.tokens_per_step else \
            (int(state.num_input_tokens_seen) if counted else None)
        lr = scheduler.get_last_lr()[0] if scheduler is not None else None
        self.tracker.step(step, tokens_seen=tokens, lr=lr, cum_lr=self.lrs.at(step))
