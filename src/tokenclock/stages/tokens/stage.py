"""The tokens stage: reads RUN/corpus/{train,val}.parquet, trains (or loads) a byte-level BPE (tokenizer.py),
and
writes RUN/tokens/{train,val}.npy token streams (uint16 when the vocab fits), document offsets,
per-id training counts, the tokenizer and meta.json.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from tokenclock.artifacts import atomic_path, read_json, read_parquet, write_json, write_npy
from tokenclock.errors import CorpusError, RunDirError
from tokenclock.manifest import stage_config, stage_status
from tokenclock.rundir import RunDir
from tokenclock.stages.tokens.config import TokensConfig
from tokenclock.stages.tokens.tokenizer import (
    encode_docs,
    eos_id,
    load_tokenizer,
    stream_dtype,
    train_bpe,
)


def tokenize(run_dir: str | Path, cfg: TokensConfig | None = None, *, progress: bool = True) -> dict:
    """The stage: corpus/ -> tokens/. Skipped when already done with the same config."""
    cfg = cfg or TokensConfig()
    run = RunDir(run_dir)
    conf = dataclasses.asdict(cfg)
    if stage_status(run, "tokens") == "done" and stage_config(run, "tokens") == conf \
            and run.tokens_meta.is_file():
        return read_json(run.tokens_meta)
    if not run.corpus_split("train").is_file():
        raise RunDirError(f"{run.corpus_split('train')} does not exist",
                          f"run `tokenclock corpus --out {run.root}` first")
    with run.stage("tokens", conf) as st:
        train = read_parquet(run.corpus_split("train"), columns=["text"])["text"].tolist()
        val = read_parquet(run.corpus_split("val"), columns=["text"])["text"].tolist()
        if not train or not val:
            raise CorpusError("the corpus has an empty train or validation split",
                              "rerun `tokenclock corpus` with more documents")
        if cfg.tokenizer:
            tok = load_tokenizer(cfg.tokenizer)
        else:
            tok = train_bpe(train, cfg.vocab_size, cfg.min_frequency)
        vocab = tok.get_vocab_size()
        dtype = stream_dtype(vocab)
        meta = {"vocab_size": vocab, "eos_id": eos_id(tok), "dtype": np.dtype(dtype).name,
                "tokenizer": cfg.tokenizer or "trained byte-level BPE"}
        for split, texts in (("train", train), ("val", val)):
            stream, offsets = encode_docs(tok, texts, cfg.batch_docs, progress, desc=f"tokenize {split}")
            write_npy(run.token_stream(split), stream.astype(dtype))
            write_npy(run.doc_offsets(split), offsets)
            meta[f"{split}_tokens"] = int(len(stream))
            meta[f"{split}_docs"] = int(len(offsets))
            meta[f"{split}_chars"] = int(sum(len(t) for t in texts))
            if split == "train":
                write_npy(run.token_counts, np.bincount(stream, minlength=vocab).astype(np.int64))
        meta["bytes_per_token"] = round(sum(len(t.encode()) for t in train) / max(1, meta["train_tokens"]), 3)
        with atomic_path(run.tokenizer) as tmp:
            tok.save(str(tmp))
        write_json(run.tokens_meta, meta)
        st.record(vocab_size=vocab, train_tokens=meta["train_tokens"], val_tokens=meta["val_tokens"])
    return meta
