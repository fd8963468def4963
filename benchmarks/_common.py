"""Shared setup for the benchmarks: a run directory trained on Python's own documentation text
(offline, shipped with CPython), so a benchmark never needs the network."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def doc_texts() -> Path:
    from tokenclock.testing import write_sample_texts

    return write_sample_texts(tempfile.mkdtemp(prefix="tokenclock-bench-texts-"))


def bench_config(preset: str, steps: int, batch: int, seq_len: int, extra: list[str] = ()):
    from tokenclock.config import load_config

    return load_config("tiny", [f"corpus.sources=[{doc_texts()}]", "corpus.max_chars=null",
                                "corpus.val_fraction=0.1", "tokens.vocab_size=4096",
                                f"model.preset={preset}", f"train.steps={steps}",
                                f"train.batch_size={batch}", f"train.seq_len={seq_len}",
                                "model.max_seq_len=1024", *extra])


def bare_step(model, opt, batch, amp, device: str) -> None:
    """One plain training update on `batch` (batch, seq_len + 1) under autocast `amp` (None: fp32):
    the bare loop every benchmark compares tokenclock's trainer with."""
    import torch

    with torch.autocast(device.split(":")[0], dtype=amp or torch.float32, enabled=amp is not None):
        logits = model(input_ids=batch[:, :-1]).logits
    loss = torch.nn.functional.cross_entropy(logits.float().reshape(-1, logits.size(-1)), batch[:, 1:].reshape(-1))
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()


YARDSTICK = ("llama-500k", 16, 256, 4096)  # preset, batch, seq_len, vocab: the demo's model and batch


def yardstick_tokens_per_second(dtype: str = "auto", device: str = "cpu", steps: int = 4, warm: int = 2) -> float:
    """Training tokens/s of a bare torch loop (AdamW, no checkpoints) of the demo's model on random
    tokens, in `dtype` as tokenclock resolves it here: the figure that makes timings from two
    machines comparable (a few seconds)."""
    import time

    import torch

    from tokenclock.precision import choose
    from tokenclock.stages.train.config import ModelConfig
    from tokenclock.stages.train.model import build_model

    preset, batch, seq_len, vocab = YARDSTICK
    amp = choose(dtype, device).amp()
    model = build_model(ModelConfig(preset=preset), vocab, seed=0).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    x = torch.randint(0, vocab, (batch, seq_len + 1), generator=torch.Generator().manual_seed(0)).to(device)
    for step in range(steps + warm):
        if step == warm:
            t0 = time.perf_counter()
        bare_step(model, opt, x, amp, device)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return steps * batch * seq_len / (time.perf_counter() - t0)


def machine_header(dtype: str = "auto", device: str = "auto", yardstick: bool = True) -> str:
    """Printed first by every benchmark (and by CI): where the figures below were measured (CPU
    model, cores, torch and its kernel capability, native bf16, the dtype `dtype` resolves to) and
    the bare loop's tokens/s of the demo's model, the yardstick between machines."""
    from tokenclock.forward import resolve_device
    from tokenclock.precision import choose, header

    device = resolve_device(device)
    preset, batch, seq_len, _ = YARDSTICK
    text = header(dtype, device)
    if yardstick:  # skipped by the quick modes the tests run
        rate = yardstick_tokens_per_second(dtype, device)
        text += (f"\nyardstick: bare training loop of {preset}, {batch}x{seq_len}, {choose(dtype, device).dtype}: "
                 f"{rate:,.0f} tokens/s")
    print(text, flush=True)
    return text
