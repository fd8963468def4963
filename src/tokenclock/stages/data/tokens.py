"""The tokens stage: reads RUN/corpus/{train,val}.parquet, trains (or loads) a byte-level BPE, and
writes RUN/tokens/{train,val}.npy token streams (uint16 when the vocab fits), document offsets,
per-id training counts, the tokenizer and meta.json. tokenizers, transformers and tqdm are imported
inside the functions that use them, for start-up time.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tokenclock.artifacts import atomic_path, read_json, read_parquet, write_json, write_npy
from tokenclock.errors import ConfigError, CorpusError, RunDirError, TokenizerError
from tokenclock.rundir import RunDir, stage_config, stage_status

EOS = "<|endoftext|>"


@dataclass
class TokensConfig:
    """How text becomes token ids."""

    vocab_size: int = 4096
    """BPE vocabulary size (including the end-of-text token)."""
    tokenizer: str | None = None
    """An existing tokenizer.json or model directory; None = train a byte-level BPE on the corpus."""
    min_frequency: int = 2
    """BPE merges need a pair seen at least this often."""
    batch_docs: int = 64
    """Documents per encode_batch call."""

    def __post_init__(self) -> None:
        if self.tokenizer is None and not 256 < self.vocab_size <= 1 << 20:
            raise ConfigError(f"tokens.vocab_size must be in (256, 1048576], got {self.vocab_size}",
                              "byte-level BPE needs at least the 256 byte tokens plus merges")


def train_bpe(texts: list[str], vocab_size: int, min_frequency: int = 2):
    """A byte-level BPE trained on `texts` with HF tokenizers; id 0 is the end-of-text token."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=min_frequency,
                                  special_tokens=[EOS], show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(texts, trainer=trainer)
    got = tok.get_vocab_size()
    if got < vocab_size:
        raise CorpusError(f"the training text supports only {got} BPE tokens, "
                          f"tokens.vocab_size asks for {vocab_size}",
                          f"set --set tokens.vocab_size={got} or less, or use a larger corpus")
    return tok


def load_tokenizer(path: str | Path):
    """A `tokenizers.Tokenizer` from a tokenizer.json file or a model directory."""
    from tokenizers import Tokenizer

    p = Path(path)
    if p.is_dir():
        p = p / "tokenizer.json"
    if not p.is_file():
        raise TokenizerError(f"no tokenizer.json at {path}",
                             "pass a tokenizer.json file or a model directory that has one")
    try:
        return Tokenizer.from_file(str(p))
    except Exception as e:
        raise TokenizerError(f"{p} is not a valid tokenizer.json ({str(e).splitlines()[0]})") from None


def eos_id(tok) -> int:
    for name in (EOS, "</s>", "<eos>"):
        i = tok.token_to_id(name)
        if i is not None:
            return i
    raise TokenizerError("the tokenizer has no end-of-text token (<|endoftext|>, </s> or <eos>)",
                         "add one as a special token")


def hf_tokenizer(tok):
    """Wrap a `tokenizers.Tokenizer` for transformers (saved beside every checkpoint)."""
    from transformers import PreTrainedTokenizerFast

    eos = tok.id_to_token(eos_id(tok))
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=eos, bos_token=eos,
                                   unk_token=None, pad_token=eos)


def encode_docs(tok, texts: list[str], batch_docs: int = 64, progress: bool = True,
                desc: str = "tokenize"):
    """Token stream with EOS after every document, and the start offset of each document."""
    from tqdm.auto import tqdm

    eos = eos_id(tok)
    pieces, offsets, pos = [], [], 0
    with tqdm(total=sum(len(t) for t in texts), unit="char", unit_scale=True, desc=desc,
              disable=not progress, leave=False) as bar:
        for i in range(0, len(texts), batch_docs):
            batch = texts[i:i + batch_docs]
            for enc in tok.encode_batch(batch):
                ids = np.asarray(enc.ids, dtype=np.int64)
                offsets.append(pos)
                pieces.append(ids)
                pieces.append(np.array([eos], dtype=np.int64))
                pos += len(ids) + 1
            bar.update(sum(len(t) for t in batch))
    stream = np.concatenate(pieces) if pieces else np.zeros(0, dtype=np.int64)
    return stream, np.asarray(offsets, dtype=np.int64)


def stream_dtype(vocab_size: int):
    return np.uint16 if vocab_size <= 65535 else np.uint32


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
