"""The byte-level BPE: training, loading (a tokenizer.json or a model folder), the end-of-text id,
the Hugging Face wrapper, batched encoding and the smallest stream dtype. tokenizers, transformers
and tqdm are imported inside the functions that use them, for start-up time.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from tokenclock.errors import CorpusError, TokenizerError

EOS = "<|endoftext|>"


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


def token_stream(tok, texts: list[str], batch: int = 64) -> np.ndarray:
    """int64 stream of `texts` tokenized with a transformers tokenizer (no special tokens), each
    text followed by the tokenizer's eos where it has one: the validation stream a series or a
    tracker traces."""
    eos = tok.eos_token_id
    pieces = []
    for i in range(0, len(texts), batch):
        for ids in tok(list(texts[i:i + batch]), add_special_tokens=False)["input_ids"]:
            pieces.append(np.asarray(ids, dtype=np.int64))
            if eos is not None:
                pieces.append(np.array([eos], dtype=np.int64))
    return np.concatenate(pieces) if pieces else np.zeros(0, np.int64)


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
