"""One checkpoint of a series tokenclock did not train: where it is (a local folder or a hub name
at a revision), whether its files are whole (config, weights, safetensors headers), its config and
tokenizer, its non-embedding parameter count, and a loader for its weights. Reads checkpoints only.

transformers, huggingface_hub and torch are imported inside the functions that need them (start-up time).
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from tokenclock.errors import RunDirError, TokenizerError
from tokenclock.stages.train.model import non_embedding_params

WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                "pytorch_model.bin.index.json")


@dataclass
class Checkpoint:
    """One model to load: a local folder (revision None) or a hub name at a revision."""

    label: str  # the revision (T axis) or the model name (M axis), as given by the user
    source: str
    revision: str | None
    row: dict = dataclasses.field(default_factory=dict)  # its axis row

    def where(self) -> str:
        return self.source if self.revision is None else f"{self.source}@{self.revision}"


def locate(model: str, revision: str | None) -> Checkpoint:
    """A local folder model/revision (or revision itself, if it is a folder), else a hub name."""
    label = revision or model
    if revision is not None and Path(model).is_dir():
        return Checkpoint(label, str(Path(model) / revision), None)
    if revision is not None and Path(revision).is_dir():
        return Checkpoint(label, str(revision), None)
    if Path(model).is_dir() or revision is None:
        return Checkpoint(label, model, None)
    return Checkpoint(label, model, revision)


def check_safetensors(path: Path) -> str | None:
    """Why a .safetensors file is unusable (truncated, bad header), or None. Reads the header only."""
    size = path.stat().st_size
    if size < 8:
        return f"{path.name} is {size} bytes (truncated)"
    with open(path, "rb") as fh:
        (n,) = struct.unpack("<Q", fh.read(8))
        if n > min(size - 8, 100 << 20):
            return f"{path.name} has a header length of {n} bytes, the file has {size} (truncated or not safetensors)"
        try:
            header = json.loads(fh.read(n))
        except (json.JSONDecodeError, UnicodeDecodeError):
            return f"{path.name} has an unreadable header (corrupt)"
    end = max((v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"), default=0)
    if 8 + n + end != size:
        return f"{path.name} holds {size} bytes, its header says {8 + n + end} (truncated or partial download)"
    return None


def check_folder(path: Path) -> str | None:
    """Why a local checkpoint folder cannot be loaded (missing config/weights, truncated), or None."""
    if not path.is_dir():
        return f"folder {path} does not exist"
    cfg = path / "config.json"
    if not cfg.is_file():
        return f"{path} has no config.json"
    try:
        json.loads(cfg.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        return f"{cfg} is not valid JSON"
    present = [f for f in WEIGHT_FILES if (path / f).is_file()]
    if not present:
        return f"{path} has no weights ({' or '.join(WEIGHT_FILES[::2])})"
    files = [path / present[0]]
    if present[0].endswith(".index.json"):
        try:
            shards = sorted(set(json.loads(files[0].read_text())["weight_map"].values()))
        except (json.JSONDecodeError, KeyError, UnicodeDecodeError):
            return f"{files[0]} is not a valid shard index"
        missing = [s for s in shards if not (path / s).is_file()]
        if missing:
            return f"{path} lacks weight shard(s) {', '.join(missing[:3])}"
        files = [path / s for s in shards]
    for f in files:
        if f.suffix == ".safetensors" and (why := check_safetensors(f)):
            return why
    return None


def tokenizer_fingerprint(tok) -> dict:
    """Vocabulary size and a hash of the (token, id) pairs: two tokenizers with equal fingerprints
    map text to the same ids."""
    vocab = sorted(tok.get_vocab().items(), key=lambda kv: kv[1])
    digest = hashlib.sha256(json.dumps(vocab, ensure_ascii=False).encode()).hexdigest()[:16]
    return {"vocab_size": len(tok), "vocab_sha256": digest}


def _fix(ck: Checkpoint) -> str:
    if ck.revision is None:
        return f"re-save or re-download {ck.source}, leave it out of --revisions, or pass --skip-bad"
    return (f"check that revision {ck.revision} exists for {ck.source}; delete its files from the "
            "huggingface_hub cache to re-download, or pass --skip-bad")


def inspect_checkpoint(ck: Checkpoint) -> dict:
    """Config, tokenizer and (local) weights of one checkpoint, without loading its weights:
    {"config", "tokenizer", "fingerprint"}. Raises RunDirError naming the checkpoint."""
    from transformers import AutoConfig, AutoTokenizer

    local = ck.revision is None and (Path(ck.source).exists() or ck.source.startswith((".", "/", "~")))
    why = check_folder(Path(ck.source).expanduser()) if local else _hub_weights_missing(ck)
    if why:
        raise RunDirError(f"checkpoint {ck.label}: {why}", _fix(ck))
    try:
        config = AutoConfig.from_pretrained(ck.source, revision=ck.revision)
    except Exception as e:
        raise RunDirError(f"checkpoint {ck.label} ({ck.where()}): no usable config ({_first(e)})", _fix(ck)) from None
    try:
        tok = AutoTokenizer.from_pretrained(ck.source, revision=ck.revision)
    except Exception as e:
        raise RunDirError(f"checkpoint {ck.label} ({ck.where()}): no usable tokenizer ({_first(e)})", _fix(ck)) from None
    return {"config": config, "tokenizer": tok, "fingerprint": tokenizer_fingerprint(tok)}


def _hub_weights_missing(ck: Checkpoint) -> str | None:
    """On the hub (when reachable): does the revision hold config.json and weights?"""
    try:
        from huggingface_hub import HfApi

        files = set(HfApi().list_repo_files(ck.source, revision=ck.revision))
    except Exception:  # offline, or a private/gated repo: loading will tell
        return None
    if "config.json" not in files:
        return f"{ck.where()} has no config.json on the hub"
    if not any(f.endswith((".safetensors", ".bin")) for f in files):
        return f"{ck.where()} has no weights on the hub"
    return None


def _first(e: Exception) -> str:
    return f"{type(e).__name__}: {(str(e).splitlines() or [''])[0][:200]}"


def model_loader(ck: Checkpoint, torch_dtype, emb_rows: int | None) -> Callable:
    """A function that loads the checkpoint's weights (AutoModelForCausalLM, in torch_dtype) and
    checks its embedding has emb_rows rows (None: any)."""
    def load():
        from transformers import AutoModelForCausalLM

        try:
            model = AutoModelForCausalLM.from_pretrained(ck.source, revision=ck.revision, dtype=torch_dtype)
        except Exception as e:
            raise RunDirError(f"checkpoint {ck.label} ({ck.where()}) cannot be loaded ({_first(e)})",
                              _fix(ck) + "; rerun the same command to resume") from None
        rows = int(model.get_input_embeddings().weight.shape[0])
        if emb_rows is not None and rows != emb_rows:
            raise TokenizerError(f"checkpoint {ck.label} has an embedding of {rows} rows, the others {emb_rows}",
                                 "trace only checkpoints of one model and tokenizer")
        return model
    return load


def _n_params(config) -> int:
    """Non-embedding parameters from the config alone (the model is built on the meta device)."""
    import torch
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        return non_embedding_params(AutoModelForCausalLM.from_config(config))


def n_params_of(ck: Checkpoint, config) -> int:
    """Non-embedding parameters of one checkpoint (the M axis)."""
    try:
        return _n_params(config)
    except Exception:  # an architecture that cannot be built on the meta device: load it once
        model = model_loader(ck, None, None)()
        try:
            return non_embedding_params(model)
        finally:
            del model
