"""Per-token learning curves from a Lightning `Trainer`, with no checkpoints stored: one callback
(tc.track.LightningCallback, `pip install tokenclock[lightning]`) traces a validation
`datasets.Dataset` text column into OUT/trace/; then tokenclock fits, spectra and reports it.

    python examples/track_lightning.py --out runs/track-lightning --steps 1000
"""
from pathlib import Path

import lightning as L
import torch
from _tracking import analyse, sizes
from datasets import Dataset
from transformers import GPT2Config, GPT2LMHeadModel

import tokenclock as tc
from tokenclock.stages.tokens.tokenizer import hf_tokenizer, train_bpe
from tokenclock.testing import write_sample_texts


class LitLM(L.LightningModule):
    def __init__(self, vocab: int, seq_len: int, steps: int):
        super().__init__()
        self.model = GPT2LMHeadModel(GPT2Config(vocab_size=vocab, n_positions=seq_len, n_embd=64, n_layer=2, bos_token_id=0, eos_token_id=0,
                                                n_head=4, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0))
        self.steps = steps

    def forward(self, input_ids):  # logits (batch, seq_len, vocab): what the tracker scores
        return self.model(input_ids).logits

    def training_step(self, batch, batch_idx):
        x = batch[0]
        return torch.nn.functional.cross_entropy(self(x[:, :-1]).flatten(0, 1), x[:, 1:].flatten())

    def configure_optimizers(self):
        opt = torch.optim.AdamW(self.parameters(), lr=3e-3)
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-3, total_steps=self.steps + 1)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


def main(argv=None):
    a = sizes(argv, out="runs/track-lightning", steps=1000)
    out = Path(a.out)
    L.seed_everything(0, verbose=False)
    texts = [p.read_text() for p in sorted(write_sample_texts(out.parent / "texts").glob("*.txt"))]
    tok = hf_tokenizer(train_bpe(texts[:-20], vocab_size=1024))  # any PreTrainedTokenizer will do
    val = Dataset.from_dict({"text": texts[-20:]})  # held-out documents, as a datasets column
    ids = torch.tensor([i for doc in tok(texts[:-20])["input_ids"] for i in doc + [tok.eos_token_id]])
    n = len(ids) // (a.seq_len + 1)
    windows = ids[: n * (a.seq_len + 1)].view(n, a.seq_len + 1)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(windows), batch_size=a.batch, shuffle=True)
    track = tc.track.LightningCallback(out, val=val, tokenizer=tok, column="text", n_seqs=a.n_seqs,
                                       seq_len=a.seq_len, tokens_per_step=a.batch * a.seq_len)  # the added line
    trainer = L.Trainer(max_steps=a.steps, accelerator="cpu", devices=1, callbacks=[track], logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(LitLM(len(tok), a.seq_len, a.steps), loader)
    analyse(a.out, report=not a.no_report)  # tokenclock fit, spectrum and report on OUT

if __name__ == "__main__":
    main()
