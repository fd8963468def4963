"""The tracker's validation windows and token names: from a token array (or a .npy of one), a text
file with the model's tokenizer, or a `datasets.Dataset` column (text or token ids), always cut by
`windows.val_windows`. Reads the input; writes nothing.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from tokenclock.errors import ConfigError, InputError


def val_inputs(val, tokenizer, *, column: str, n_seqs: int, seq_len: int, seed: int) -> tuple[np.ndarray, dict]:
    """(n, seq_len + 1) int64 windows of `val` and a note of where they came from.

    `val`: a 1-D token array or tensor (a token stream), a 2-D one (the windows themselves), a
    path to a .npy token stream, a path to text (file or folder, tokenized with `tokenizer`), or a
    `datasets.Dataset` whose `column` holds text (tokenized) or token ids."""
    from tokenclock.windows import val_windows

    if hasattr(val, "column_names"):  # a datasets.Dataset
        stream, note = _dataset_stream(val, tokenizer, column), {"val": f"dataset column {column!r}"}
    elif isinstance(val, (str, Path)):
        path = Path(val)
        if not path.exists():
            raise InputError(f"validation input {path} does not exist", "pass a token array, a .npy or a text file")
        if path.suffix == ".npy":
            stream, note = np.load(path, mmap_mode="r", allow_pickle=False), {"val": str(path)}
        else:
            return _text_windows(path, tokenizer, n_seqs, seq_len, seed)
    else:
        arr = val.detach().cpu().numpy() if hasattr(val, "detach") else np.asarray(val)
        if arr.ndim == 2:
            if arr.shape[1] != seq_len + 1:
                raise ConfigError(f"the validation windows have {arr.shape[1]} tokens each, seq_len={seq_len} "
                                  f"needs {seq_len + 1}", f"pass seq_len={arr.shape[1] - 1}")
            return _check_ids(arr.astype(np.int64)), {"val": f"windows {arr.shape[0]} x {arr.shape[1]}"}
        if arr.ndim != 1:
            raise ConfigError(f"val has shape {arr.shape}", "pass a 1-D token stream or 2-D windows")
        stream, note = arr, {"val": f"token array of {len(arr)}"}
    stream = _check_ids(np.asarray(stream))
    if len(stream) < seq_len + 2:
        raise InputError(f"the validation tokens ({len(stream)}) are fewer than one window of {seq_len + 1}",
                         "pass more validation tokens or a smaller seq_len")
    return val_windows(stream, seed, n_seqs, seq_len, source="the validation token stream", setting="n_seqs"), note


def _check_ids(arr: np.ndarray) -> np.ndarray:
    if arr.dtype.kind not in "iu":
        raise InputError(f"the validation tokens are of type {arr.dtype}, not integer token ids",
                         "pass token ids, or text with tokenizer=")
    if len(arr) and int(arr.min()) < 0:
        raise InputError("the validation tokens hold negative ids", "pass the ids your tokenizer gives")
    return arr


def _text_windows(path: Path, tokenizer, n_seqs: int, seq_len: int, seed: int) -> tuple[np.ndarray, dict]:
    from tokenclock.stages.trace.config import TraceConfig
    from tokenclock.stages.trace.series import text_inputs

    if tokenizer is None:
        raise ConfigError(f"validation text {path} needs the model's tokenizer", "pass tokenizer=")
    inputs, info = text_inputs(str(path), hf_tokenizer(tokenizer), TraceConfig(n_seqs=n_seqs), seq_len, seed)
    return inputs, {"val": str(path), **info}


def _dataset_stream(ds, tokenizer, column: str) -> np.ndarray:
    if column not in ds.column_names:
        raise ConfigError(f"the validation dataset has no column {column!r} (it has: {', '.join(ds.column_names)})",
                          "pass column= with one of those")
    values = ds[column]
    if values and isinstance(values[0], str):
        if tokenizer is None:
            raise ConfigError(f"dataset column {column!r} holds text and needs the model's tokenizer",
                              "pass tokenizer=, or a column of token ids")
        from tokenclock.stages.tokens.tokenizer import token_stream

        return token_stream(hf_tokenizer(tokenizer), list(values))
    return np.concatenate([np.asarray(v, np.int64).reshape(-1) for v in values]) if values else np.zeros(0, np.int64)


def hf_tokenizer(tokenizer):
    """A transformers tokenizer from what the user passed: itself, a `tokenizers.Tokenizer`, or a
    path to a tokenizer.json / tokenizer folder."""
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    if isinstance(tokenizer, (str, Path)):
        p = Path(tokenizer)
        if p.is_file():
            return PreTrainedTokenizerFast(tokenizer_file=str(p))
        return AutoTokenizer.from_pretrained(str(p))
    if hasattr(tokenizer, "encode_batch"):  # tokenizers.Tokenizer
        return PreTrainedTokenizerFast(tokenizer_object=tokenizer)
    return tokenizer


class IdNames:
    """Token names when no tokenizer is given: '<17>' for id 17 (token_table's two methods)."""

    def __init__(self, vocab_size: int):
        self.vocab_size = vocab_size

    def get_vocab_size(self) -> int:
        return self.vocab_size

    def decode(self, ids, skip_special_tokens=False) -> str:
        return "".join(f"<{int(i)}>" for i in ids)


def table_tokenizer(tokenizer, vocab_size: int):
    """What `token_table` decodes with: the tokenizer (get_vocab_size + decode), or IdNames."""
    if tokenizer is None:
        return IdNames(vocab_size)
    if hasattr(tokenizer, "get_vocab_size"):
        return tokenizer
    from tokenclock.stages.trace.series import TableTokenizer

    return TableTokenizer(hf_tokenizer(tokenizer))
