"""Optional checkpoints at the traced steps: Hugging Face folders as `tokenclock train` writes them
(weights, tokenizer, sidecar), which load in transformers and score exactly the traced row, and
the optimizer state at keep_state_steps."""
from __future__ import annotations

import numpy as np
import torch

from tokenclock.artifacts import read_json, read_npy
from tokenclock.forward import token_losses
from tokenclock.rundir import RunDir
from tokenclock.stages.tokens.tokenizer import load_tokenizer
from tokenclock.stages.train.checkpoint import state_step
from tokenclock.track import Tracker


def test_checkpoints_reload_to_the_traced_rows(tiny_run, tmp_path):
    from transformers import AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM

    src = RunDir(tiny_run)
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=512, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                         num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=64))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    val = read_npy(src.token_stream("val"))
    steps = [0, 1, 2, 4, 8]
    with Tracker(tmp_path / "out", model, val=src.token_stream("val"), steps=steps, n_seqs=4, seq_len=32,
                 tokenizer=load_tokenizer(src.tokenizer), checkpoints=True, keep_state_steps=[4], optimizer=opt,
                 progress=False) as tracker:
        for step in range(9):
            tracker.step(step, tokens_seen=step * 128)
            x = torch.from_numpy(val[step * 40:step * 40 + 4 * 33].astype(np.int64).reshape(4, 33))
            model(input_ids=x[:, :-1], labels=x[:, :-1]).loss.backward()
            opt.step()
            opt.zero_grad()
    run = RunDir(tmp_path / "out")
    assert run.ckpt_steps() == steps
    loss, windows = read_npy(run.trace_loss), torch.from_numpy(read_npy(run.trace_inputs).astype(np.int64))
    for k, s in enumerate(steps):
        m = AutoModelForCausalLM.from_pretrained(run.ckpt(s), dtype=torch.float32).eval()
        np.testing.assert_allclose(token_losses(m, windows, None, "cpu").reshape(-1).numpy(), loss[k],
                                   rtol=1e-5, atol=1e-6)
        assert read_json(run.ckpt_sidecar(s))["tokens_seen"] == s * 128
        assert (run.ckpt(s) / "tokenizer.json").is_file()
    assert state_step(run.ckpt_optimizer(4)) == 4
    assert not run.ckpt_optimizer(2).exists()
