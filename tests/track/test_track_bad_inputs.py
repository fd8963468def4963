"""The tracker's bad inputs (docs/bad_inputs.md, "In-loop tracker"): each is refused with one line
naming the problem and the fix, before anything is written (a fresh out directory stays absent; a
resumed one keeps its files byte for byte)."""
from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from tokenclock.errors import ConfigError, DataError, RunDirError, RunLockedError, TokenizerError
from tokenclock.track import Tracker


class TinyLM(torch.nn.Module):
    def __init__(self, vocab: int = 64, hidden: int = 16):
        super().__init__()
        self.emb = torch.nn.Embedding(vocab, hidden)
        self.out = torch.nn.Linear(hidden, vocab)

    def forward(self, x):
        return self.out(self.emb(x))


def _llama(max_pos: int):
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                      num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=max_pos)
    return LlamaForCausalLM(cfg)


VAL = (np.arange(4000) % 60).astype(np.int64)
SMALL = {"n_seqs": 4, "seq_len": 16, "progress": False}


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _traced(out: Path, model=None, **kw) -> dict[str, bytes]:
    with Tracker(out, model or TinyLM(), val=VAL, steps=[0, 1, 2, 4, 8], **{**SMALL, **kw}) as tr:
        for s in (0, 1, 2, 4, 8):
            tr.step(s)
    return _files(out)


def _one_line(e: pytest.ExceptionInfo, *needles: str) -> None:
    text = str(e.value)
    assert "\n" not in text
    for n in needles:
        assert n in text, text


def test_vocabulary_not_covering_the_tokens(tmp_path):
    with pytest.raises(TokenizerError) as e:
        Tracker(tmp_path / "out", TinyLM(vocab=32), val=VAL, steps=10, **SMALL)
    _one_line(e, "id 59", "32 rows", "tokenizer")
    assert not (tmp_path / "out").exists()


def test_windows_longer_than_the_context(tmp_path):
    with pytest.raises(ConfigError) as e:
        Tracker(tmp_path / "out", _llama(max_pos=8), val=VAL, steps=10, **SMALL)
    _one_line(e, "16 tokens", "context (8)", "seq_len=8")
    assert not (tmp_path / "out").exists()


def test_schedule_not_increasing(tmp_path):
    with pytest.raises(ConfigError) as e:
        Tracker(tmp_path / "out", TinyLM(), val=VAL, steps=[0, 4, 2, 8], **SMALL)
    _one_line(e, "step 2 follows step 4", "sort")
    assert not (tmp_path / "out").exists()


def test_resume_with_other_validation_tokens(tmp_path):
    before = _traced(tmp_path / "out")
    with pytest.raises(RunDirError) as e:
        Tracker(tmp_path / "out", TinyLM(), val=VAL, steps=[0, 1, 2, 4, 8], **{**SMALL, "seed": 1})
    _one_line(e, "other validation tokens", "4 x 16", "sha256")
    assert _files(tmp_path / "out") == before


def test_resume_with_another_model(tmp_path):
    before = _traced(tmp_path / "out")
    with pytest.raises(RunDirError) as e:
        Tracker(tmp_path / "out", TinyLM(hidden=24), val=VAL, steps=[0, 1, 2, 4, 8], **SMALL)
    _one_line(e, "another model", "TinyLM")
    assert _files(tmp_path / "out") == before


def test_out_directory_held_by_another_writer(tmp_path):
    import json
    import os
    import socket

    out = tmp_path / "out"
    out.mkdir()
    holder = subprocess.Popen(["sleep", "60"])
    try:
        (out / ".lock").write_text(json.dumps({"pid": holder.pid, "host": socket.gethostname(), "stage": "train",
                                               "since": "now"}))
        with pytest.raises(RunLockedError) as e:
            Tracker(out, TinyLM(), val=VAL, steps=10, **SMALL)
    finally:
        os.kill(holder.pid, 9)
        holder.wait()
    _one_line(e, f"pid {holder.pid}", "stage train")
    assert sorted(p.name for p in out.iterdir()) == [".lock"]


def test_step_lower_than_the_last_traced_row(tmp_path):
    out = tmp_path / "out"
    with Tracker(out, TinyLM(), val=VAL, steps=[0, 1, 2, 3, 4, 8], **SMALL) as tr:
        for s in (0, 1, 2, 4, 8):  # this loop skipped step 3
            tr.step(s)
        with pytest.raises(DataError) as e:
            tr.step(5)
        _one_line(e, "tracker.step(5) after tracker.step(8)")
    before = _files(out)
    with Tracker(out, TinyLM(), val=VAL, steps=[0, 1, 2, 3, 4, 8], **SMALL) as tr:
        assert not tr.step(2)  # a replayed step that was traced: skipped, not scored twice
        with pytest.raises(DataError) as e:
            tr.step(3)
    _one_line(e, "step 3 is lower than the last traced row (step 8)", "resume the loop at step 8")
    after = _files(out)
    assert {k: v for k, v in after.items() if k != "manifest.json"} == \
        {k: v for k, v in before.items() if k != "manifest.json"}
