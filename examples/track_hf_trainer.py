"""Per-token learning curves from a Hugging Face `Trainer`, with no checkpoints stored: one callback
(tc.track.HFCallback) traces validation text, tokenized with the model's own tokenizer, into
OUT/trace/; then tokenclock fits, spectra and reports it.

    python examples/track_hf_trainer.py --out runs/track-hf --steps 1000
"""
from pathlib import Path

from _tracking import analyse, sizes
from datasets import Dataset
from transformers import LlamaConfig, LlamaForCausalLM, Trainer, TrainingArguments

import tokenclock as tc
from tokenclock.stages.tokens.tokenizer import hf_tokenizer, train_bpe
from tokenclock.testing import write_sample_texts


def main(argv=None):
    a = sizes(argv, out="runs/track-hf", steps=1000)
    out = Path(a.out)
    texts = sorted(write_sample_texts(out.parent / "texts").glob("*.txt"))  # Python's docs, offline
    train_texts, val_file = [p.read_text() for p in texts[:-20]], out.parent / "val.txt"
    val_file.write_text("\n\n".join(p.read_text() for p in texts[-20:]))
    tok = hf_tokenizer(train_bpe(train_texts, vocab_size=1024))  # any PreTrainedTokenizer will do
    ids = [i for doc in tok(train_texts)["input_ids"] for i in doc + [tok.eos_token_id]]
    n = len(ids) // a.seq_len
    train = Dataset.from_dict({"input_ids": [ids[i * a.seq_len:(i + 1) * a.seq_len] for i in range(n)]})
    train = train.map(lambda b: {"labels": b["input_ids"]}, batched=True)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=len(tok), hidden_size=64, intermediate_size=192,
                                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=4,
                                         max_position_embeddings=a.seq_len))
    args = TrainingArguments(output_dir=str(out.parent / "hf-trainer"), max_steps=a.steps,
                             per_device_train_batch_size=a.batch, learning_rate=3e-3, warmup_steps=a.steps // 20,
                             lr_scheduler_type="cosine", save_strategy="no", report_to=[], use_cpu=True,
                             logging_steps=max(1, a.steps // 10), seed=0, disable_tqdm=True)
    track = tc.track.HFCallback(out, val=val_file, n_seqs=a.n_seqs, seq_len=a.seq_len,
                                tokens_per_step=a.batch * a.seq_len)  # the one added line
    Trainer(model=model, args=args, train_dataset=train, processing_class=tok, callbacks=[track]).train()
    analyse(a.out, report=not a.no_report)  # tokenclock fit, spectrum and report on OUT

if __name__ == "__main__":
    main()
