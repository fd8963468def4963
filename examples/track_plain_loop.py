"""Per-token learning curves from a plain PyTorch loop (nanoGPT-style), with no checkpoints stored:
a Tracker rides along and writes OUT/trace/, then tokenclock fits, spectra and reports it.

    python examples/track_plain_loop.py --out runs/track-plain --steps 2000
"""
from pathlib import Path

import numpy as np
import torch
from _tracking import analyse, sizes
from torch import nn

import tokenclock as tc
from tokenclock.testing import write_sample_texts


class GPT(nn.Module):
    """Any module mapping token ids (batch, seq_len) to logits (batch, seq_len, vocab) will do."""

    def __init__(self, vocab=256, d=64, layers=2, heads=4, block_size=128):
        super().__init__()
        self.block_size = block_size  # the tracker reads the context length from here
        self.tok, self.pos = nn.Embedding(vocab, d), nn.Embedding(block_size, d)
        layer = nn.TransformerEncoderLayer(d, heads, 4 * d, dropout=0.0, batch_first=True, norm_first=True)
        self.blocks = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.head = nn.Linear(d, vocab)

    def forward(self, idx):
        t = idx.shape[1]
        x = self.tok(idx) + self.pos(torch.arange(t, device=idx.device))
        mask = nn.Transformer.generate_square_subsequent_mask(t, device=idx.device)
        return self.head(self.blocks(x, mask=mask, is_causal=True))


def main(argv=None):
    a = sizes(argv, out="runs/track-plain", steps=2000)
    torch.manual_seed(0)
    folder = write_sample_texts(Path(a.out).parent / "texts")  # Python's docs: offline English
    data = np.frombuffer(b"".join(p.read_bytes() for p in sorted(folder.glob("*.txt"))), np.uint8).astype(np.int64)
    train, val = data[: int(0.9 * len(data))], data[int(0.9 * len(data)):]  # byte-level tokens
    model = GPT(block_size=a.seq_len)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.1)
    tracker = tc.Tracker(a.out, model, val=val, steps=a.steps, n_seqs=a.n_seqs, seq_len=a.seq_len)
    rng = np.random.default_rng(0)
    for step in range(a.steps + 1):
        lr = 1e-3 * min(1.0, (step + 1) / 50) * (0.1 + 0.9 * 0.5 * (1 + np.cos(np.pi * step / a.steps)))
        tracker.step(step, tokens_seen=step * a.batch * a.seq_len, lr=lr)  # the one added line
        if step == a.steps:
            break
        ix = rng.integers(0, len(train) - a.seq_len - 1, a.batch)
        xy = torch.from_numpy(np.stack([train[i:i + a.seq_len + 1] for i in ix]))
        loss = nn.functional.cross_entropy(model(xy[:, :-1]).flatten(0, 1), xy[:, 1:].flatten())
        for g in opt.param_groups:
            g["lr"] = lr
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    tracker.close()
    analyse(a.out, report=not a.no_report)  # tokenclock fit, spectrum and report on OUT

if __name__ == "__main__":
    main()
