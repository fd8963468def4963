"""Tracing checkpoint series that tokenclock did not train: Hugging Face revisions (Pythia, OLMo)
and local checkpoint folders. Reads each checkpoint with AutoModelForCausalLM and its own
tokenizer, and writes the same RUN/trace/ artifacts as `trace.trace` (source "hf"), through
`trace.trace_series`: along steps (T axis, `trace_revisions`) or along model size (M axis,
`trace_models`, column `n_params`).
"""
from __future__ import annotations

import csv
import dataclasses
import hashlib
import json
import re
import struct
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from tokenclock.errors import ConfigError, DataError, InputError, RunDirError, TokenizerError
from tokenclock.rundir import RunDir, run_lock, update_stage
from tokenclock.artifacts import write_json, write_npy, write_parquet
from tokenclock.scoring import resolve_device, trace_dtype
from tokenclock.stages.data.documents import CorpusConfig
from tokenclock.stages.data.corpus import read_documents, split_documents
from tokenclock.stages.trace.stage import MIN_CHECKPOINTS, TraceConfig, token_table, trace_series
from tokenclock.stages.train.model import non_embedding_params, quiet_transformers
from tokenclock.windows import val_offsets

# Pythia saved 154 checkpoints per model, all sizes at the same steps on the same data order:
# log-spaced to 512, then every 1000 steps (the `extra-save-iters` of its training configs).
PYTHIA_STEPS = [0] + [2 ** i for i in range(10)] + list(range(1000, 143001, 1000))
PYTHIA_TOKENS_PER_STEP = 2_097_152  # 1024 sequences x 2048 tokens
PRESETS: dict[str, Callable[[], list[str]]] = {"pythia": lambda: [f"step{s}" for s in PYTHIA_STEPS]}
DEFAULT_SEQ_LEN = 256  # TraceConfig.seq_len = 0 means this here (there is no run to take it from)

# OLMo: `step1000-tokens4B` (also with a prefix, e.g. `stage1-step1000-tokens5B`).
OLMO_NAME = re.compile(r"step(\d+)-tokens(\d+)([KMBT]?)", re.IGNORECASE)
# Local folders: step0, step_0000128 (tokenclock), checkpoint-500 (HF Trainer), global_step100.
DEFAULT_STEP_PATTERN = r"(?:step|checkpoint)[-_]?(\d+)"
_SCALE = {"": 1, "K": 10 ** 3, "M": 10 ** 6, "B": 10 ** 9, "T": 10 ** 12}
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                "pytorch_model.bin.index.json")


# ----------------------------------------------------------------------------- revision names -> axis


def preset_revisions(name: str) -> list[str]:
    """The revision names of a preset (`pythia`: step0, step1, step2, step4, ..., step143000)."""
    if name not in PRESETS:
        raise ConfigError(f"unknown revision preset '{name}'", f"use one of: {', '.join(PRESETS)}")
    return PRESETS[name]()


def parse_revision(name: str, pattern: str | None = None) -> dict:
    """Axis row of a revision name: {"step": int, "tokens_seen": int or None}.

    OLMo names give tokens_seen (`step1000-tokens4B` -> 4e9); `pattern` is a regex whose first
    group (or group `step`) is the step; the default finds stepN, step_N, checkpoint-N, global_stepN.
    """
    base = Path(name).name or name
    if pattern is None:
        m = OLMO_NAME.search(base)
        if m:
            return {"step": int(m.group(1)), "tokens_seen": int(m.group(2)) * _SCALE[m.group(3).upper()]}
    try:
        rx = re.compile(pattern or DEFAULT_STEP_PATTERN, 0 if pattern else re.IGNORECASE)
    except re.error as e:
        raise ConfigError(f"--step-pattern {pattern!r} is not a valid regex ({e})") from None
    m = rx.search(base)
    if not m or not m.groups():
        raise InputError(f"cannot read a step from revision name '{name}'",
                         "pass --step-pattern REGEX (first group = step) or --step-map FILE (revision -> step)")
    step = m.group("step") if "step" in rx.groupindex else m.group(1)
    try:
        return {"step": int(step), "tokens_seen": None}
    except (TypeError, ValueError):
        raise InputError(f"--step-pattern matched '{step}' in '{name}', not an integer step",
                         "make the first group match digits only, e.g. step(\\d+)") from None


def read_step_map(path: str | Path) -> dict[str, dict]:
    """A user's mapping revision -> step (and optional tokens_seen), from CSV (columns revision,
    step[, tokens_seen]) or JSON ({"rev": step} or {"rev": {"step": .., "tokens_seen": ..}})."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"step map {path} does not exist", "pass a CSV or JSON file: revision -> step")
    out: dict[str, dict] = {}
    try:
        if path.suffix.lower() == ".json":
            for rev, v in json.loads(path.read_text()).items():
                v = v if isinstance(v, dict) else {"step": v}
                out[str(rev)] = {"step": int(v["step"]), "tokens_seen": _opt_int(v.get("tokens_seen"))}
        else:
            with open(path, newline="") as fh:
                for row in csv.DictReader(fh):
                    out[row["revision"].strip()] = {"step": int(row["step"]),
                                                    "tokens_seen": _opt_int(row.get("tokens_seen"))}
    except (ValueError, KeyError, TypeError, AttributeError, json.JSONDecodeError) as e:
        raise InputError(f"step map {path} is malformed ({type(e).__name__}: {e})",
                         "write CSV with a header `revision,step[,tokens_seen]` or JSON {\"rev\": step}") from None
    if not out:
        raise InputError(f"step map {path} is empty", "list one revision per row")
    return out


def _opt_int(v) -> int | None:
    return None if v in (None, "") else int(v)


def resolve_revisions(model: str, revisions: str | list[str] | None, pattern: str | None = None,
                      step_map: dict | None = None) -> list[str]:
    """Revision names from a preset name, `all`, a comma list, a text file (one per line) or the
    step map's keys. `all`: subfolders of a local --model folder whose names carry a step, or the
    branches of a hub repository."""
    if isinstance(revisions, (list, tuple)):
        return [str(r) for r in revisions]
    if revisions is None:
        if step_map:
            return list(step_map)
        revisions = "all" if Path(model).is_dir() else None
    if revisions is None:
        raise ConfigError(f"which revisions of {model}?", "pass --revisions pythia, a comma list or all")
    if revisions in PRESETS:
        return preset_revisions(revisions)
    if revisions == "all":
        if Path(model).is_dir():
            names = [p.name for p in Path(model).iterdir() if p.is_dir() and not p.name.startswith(".")]
        else:
            from huggingface_hub import HfApi

            try:
                names = [b.name for b in HfApi().list_repo_refs(model).branches]
            except Exception as e:
                raise InputError(f"cannot list the revisions of {model} ({type(e).__name__})",
                                 "pass --revisions as a comma list or a preset (pythia)") from None
        keep = []
        for n in sorted(names):
            if step_map is not None:
                if n in step_map:
                    keep.append(n)
                continue
            try:
                parse_revision(n, pattern)
                keep.append(n)
            except InputError:
                continue
        if not keep:
            raise InputError(f"{model} has no revisions whose names carry a step",
                             "pass --revisions explicitly, --step-pattern REGEX or --step-map FILE")
        return keep
    if Path(revisions).is_file():
        return [ln.strip() for ln in Path(revisions).read_text().splitlines() if ln.strip()]
    return [r.strip() for r in revisions.split(",") if r.strip()]


# ----------------------------------------------------------------------------- one checkpoint


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


def _loader(ck: Checkpoint, torch_dtype, emb_rows: int | None) -> Callable:
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


# ----------------------------------------------------------------------------- validation text


def text_inputs(text: str, tok, cfg: TraceConfig, seq_len: int, seed: int) -> tuple[np.ndarray, dict]:
    """(n_seqs, seq_len + 1) int64 windows of the text tokenized with the model's tokenizer.

    `text`: a text/jsonl/parquet file, a folder of them, or `builtin` (the validation split of the
    built-in corpus, the same documents a tokenclock run validates on)."""
    if text == "builtin":
        ccfg = CorpusConfig()
        docs = split_documents(read_documents(ccfg), ccfg)[1]
    else:
        docs = read_documents(CorpusConfig(sources=[text]))
    eos = tok.eos_token_id
    pieces = []
    for i in range(0, len(docs), 64):
        for ids in tok([d.text for d in docs[i:i + 64]], add_special_tokens=False)["input_ids"]:
            pieces.append(np.asarray(ids, dtype=np.int64))
            if eos is not None:
                pieces.append(np.array([eos], dtype=np.int64))
    stream = np.concatenate(pieces) if pieces else np.zeros(0, np.int64)
    if len(stream) < seq_len + 2:
        raise InputError(f"--text {text} gives {len(stream)} tokens, fewer than one sequence of {seq_len + 1}",
                         "pass more text or a smaller --seq-len")
    offs = val_offsets(seed, len(stream), cfg.n_seqs, seq_len)
    if len(offs) < cfg.n_seqs:
        print(f"tokenclock: warning: --text {text} holds {len(offs)} sequences of {seq_len + 1} tokens, "
              f"fewer than n_seqs={cfg.n_seqs}; tracing {len(offs)}", file=sys.stderr)
    inputs = stream[offs[:, None] + np.arange(seq_len + 1)[None, :]]
    return inputs, {"text": text, "n_docs": len(docs), "text_tokens": int(len(stream))}


class _TableTokenizer:
    """The two methods token_table uses, over a transformers tokenizer."""

    def __init__(self, tok):
        self.tok = tok

    def get_vocab_size(self) -> int:
        return len(self.tok)

    def decode(self, ids, skip_special_tokens=False) -> str:
        return self.tok.decode(ids, skip_special_tokens=skip_special_tokens,
                               clean_up_tokenization_spaces=False)


# ----------------------------------------------------------------------------- the two axes


def trace_revisions(out: str | Path, model: str, revisions: str | list[str] | None = None,
                    text: str = "builtin", cfg: TraceConfig | None = None, *,
                    tokens_per_step: int | None = None, step_pattern: str | None = None,
                    step_map: str | Path | None = None, skip_bad: bool = False,
                    progress: bool = True) -> dict:
    """T axis: every revision of one model (hub revisions or local checkpoint folders) x seeded
    windows of `text`, into OUT/trace/ with axis columns step and tokens_seen (when known)."""
    smap = read_step_map(step_map) if step_map else None
    names = resolve_revisions(model, revisions, step_pattern, smap)
    cks = []
    for name in names:
        ck = locate(model, name)
        if smap is not None:
            if name not in smap:
                raise InputError(f"revision {name} is not in the step map {step_map}", "add a row for it")
            ck.row = dict(smap[name])
        else:
            ck.row = parse_revision(name, step_pattern)
        if tokens_per_step:
            ck.row["tokens_seen"] = ck.row["step"] * int(tokens_per_step)
        cks.append(ck)
    cks.sort(key=lambda c: c.row["step"])
    steps = [c.row["step"] for c in cks]
    dup = sorted({s for s in steps if steps.count(s) > 1})
    if dup:
        raise DataError(f"several revisions map to step {dup[0]}: "
                        f"{', '.join(c.label for c in cks if c.row['step'] == dup[0])}",
                        "list each step once, or fix --step-pattern / --step-map")
    conf = {"mode": "revisions", "model": model, "text": text, "tokens_per_step": tokens_per_step,
            "step_pattern": step_pattern, "step_map": str(step_map) if step_map else None}
    return _trace(out, cks, "step", conf, cfg, skip_bad, same_model=True, progress=progress)


def trace_models(out: str | Path, models: list[str], revision: str | None = None,
                 text: str = "builtin", cfg: TraceConfig | None = None, *,
                 skip_bad: bool = False, progress: bool = True) -> dict:
    """M axis: several models (one tokenizer) at one revision, rows sorted by non-embedding
    parameter count (axis column n_params)."""
    cks = [locate(m, revision) for m in models]
    for ck, m in zip(cks, models):
        ck.label = m
    conf = {"mode": "models", "models": list(models), "revision": revision, "text": text}
    return _trace(out, cks, "n_params", conf, cfg, skip_bad, same_model=False, progress=progress)


def _n_params(config) -> int:
    """Non-embedding parameters from the config alone (the model is built on the meta device)."""
    import torch
    from transformers import AutoModelForCausalLM


    with torch.device("meta"):
        return non_embedding_params(AutoModelForCausalLM.from_config(config))


def _n_params_of(ck: Checkpoint, config) -> int:
    try:
        return _n_params(config)
    except Exception:  # an architecture that cannot be built on the meta device: load it once
        model = _loader(ck, None, None)()
        try:
            return non_embedding_params(model)
        finally:
            del model


def _trace(out, cks: list[Checkpoint], axis: str, conf: dict, cfg: TraceConfig | None, skip_bad: bool,
           same_model: bool, progress: bool) -> dict:
    quiet_transformers()
    cfg = cfg or TraceConfig()
    run = RunDir(out)
    conf = {**conf, "checkpoints": [c.label for c in cks], "skip_bad": skip_bad,
            "trace": dataclasses.asdict(cfg) | {"seq_len": cfg.seq_len or DEFAULT_SEQ_LEN,
                                                "seed": cfg.seed if cfg.seed >= 0 else 0}}
    t0 = time.time()
    with run_lock(run, "trace"):
        update_stage(run, "trace", "running", config=conf)
        skipped: list[dict] = []
        try:
            meta = _trace_locked(run, cks, axis, conf, cfg, skip_bad, same_model, progress, skipped)
        except BaseException:
            update_stage(run, "trace", "failed", skipped=skipped)
            raise
        seconds = time.time() - t0
        meta["tokens_per_second"] = meta["n_tok"] * meta["n_ckpt"] / max(seconds, 1e-9)
        update_stage(run, "trace", "done", config=conf, seconds=seconds, summary=meta, skipped=skipped)
    return meta


def _check_good(cks: list[Checkpoint], skip_bad: bool, skipped: list[dict]) -> tuple[list, list]:
    """Inspect every checkpoint (config, tokenizer, local weights) before the first forward pass."""
    good, info = [], []
    for ck in cks:
        try:
            inf = inspect_checkpoint(ck)
            if info:  # keep one tokenizer in memory (154 Pythia revisions would hold 154)
                inf["tokenizer"] = None
            info.append(inf)
            good.append(ck)
        except RunDirError as e:
            if not skip_bad:
                raise
            print(f"tokenclock: warning: skipping {ck.label}: {e.message}", file=sys.stderr)
            skipped.append({"checkpoint": ck.label, "reason": e.message})
    if len(good) < MIN_CHECKPOINTS:
        raise DataError(f"{len(good)} usable checkpoints ({len(skipped)} skipped); a trace needs at least "
                        f"{MIN_CHECKPOINTS}", "add revisions or repair the skipped ones")
    return good, info


def _check_vocab(good: list[Checkpoint], info: list[dict], same_model: bool, seq_len: int) -> None:
    """One tokenizer for all; config vocab_size covers it (and is equal along one model's revisions)."""
    ref, first = info[0], good[0].label
    n_tok = ref["fingerprint"]["vocab_size"]
    ref_rows = int(getattr(ref["config"], "vocab_size", 0) or 0)
    for ck, inf in zip(good, info):
        if inf["fingerprint"] != ref["fingerprint"]:
            raise TokenizerError(f"checkpoint {ck.label} has a different tokenizer ({inf['fingerprint']}) "
                                 f"than {first} ({ref['fingerprint']})",
                                 "trace only checkpoints that share one tokenizer")
        rows = int(getattr(inf["config"], "vocab_size", 0) or 0)
        if rows and rows < n_tok:
            raise TokenizerError(f"checkpoint {ck.label} has config vocab_size {rows}, smaller than its "
                                 f"tokenizer's {n_tok} tokens", "the tokenizer does not belong to this model")
        if same_model and rows != ref_rows:
            raise TokenizerError(f"checkpoint {ck.label} has config vocab_size {rows}, {first} has {ref_rows}",
                                 "trace only revisions of one model")
        max_pos = getattr(inf["config"], "max_position_embeddings", None)
        if max_pos and seq_len > max_pos:
            raise ConfigError(f"seq_len {seq_len} exceeds {ck.label}'s max_position_embeddings {max_pos}",
                              f"pass --seq-len {max_pos} or less")


def _trace_locked(run: RunDir, cks, axis, conf, cfg: TraceConfig, skip_bad, same_model, progress,
                  skipped: list[dict]) -> dict:
    import torch


    seq_len, seed = conf["trace"]["seq_len"], conf["trace"]["seed"]
    good, info = _check_good(cks, skip_bad, skipped)
    _check_vocab(good, info, same_model, seq_len)
    ref = info[0]
    if axis == "n_params":
        for ck, inf in zip(good, info):
            ck.row = {"n_params": _n_params_of(ck, inf["config"])}
        order = sorted(range(len(good)), key=lambda i: good[i].row["n_params"])
        good, info = [good[i] for i in order], [info[i] for i in order]
        ns = [c.row["n_params"] for c in good]
        if len(set(ns)) < len(ns):
            raise DataError("two models have the same non-embedding parameter count", "list each model size once")
    tok = ref["tokenizer"]
    device = resolve_device(cfg.device)
    inputs, text_info = text_inputs(conf["text"], tok, cfg, seq_len, seed)
    torch_dtype = torch.bfloat16 if trace_dtype(cfg.dtype, device) is not None else torch.float32
    emb = int(ref["config"].vocab_size) if same_model else None
    loaders = [(c.row, _loader(c, torch_dtype, emb)) for c in good]
    sig = {"conf": conf, "kept": [c.label for c in good],
           "inputs_sha": hashlib.sha256(np.ascontiguousarray(inputs).tobytes()).hexdigest()}
    loss = trace_series(run, loaders, inputs, cfg, device, progress=progress, signature=sig)
    axis_cols = _axis_columns(good, axis)
    write_npy(run.trace_inputs, inputs.astype(np.int32))
    write_parquet(run.trace_axis, axis_cols)
    table = token_table(_TableTokenizer(tok), inputs, None, cfg.context_tokens)
    table["train_count"] = np.full(len(table["tok_idx"]), -1, np.int64)  # no training split here
    table["unigram_loss"] = np.full(len(table["tok_idx"]), np.nan)
    write_parquet(run.trace_tokens, table)
    meta = {"n_tok": int(loss.shape[1]), "n_ckpt": int(loss.shape[0]), "vocab_size": len(tok),
            "seq_len": seq_len, "n_seqs": int(inputs.shape[0]), "axes": list(axis_cols), "source": "hf",
            "mode": conf["mode"], "checkpoints": [c.label for c in good],
            "sources": [c.where() for c in good], "skipped": skipped, **text_info,
            "tokenizer": ref["fingerprint"], "train_counts": False,
            "train_counts_note": "no training split: train_count is -1 and unigram_loss NaN",
            "dtype": "bf16" if torch_dtype is torch.bfloat16 else "fp32",
            "mean_loss_first": float(np.mean(loss[0])), "mean_loss_last": float(np.mean(loss[-1]))}
    write_json(run.trace_meta, meta)
    return meta


def _axis_columns(cks: list[Checkpoint], axis: str) -> dict:
    if axis == "n_params":
        return {"n_params": np.array([c.row["n_params"] for c in cks], np.int64)}
    cols = {"step": np.array([c.row["step"] for c in cks], np.int64)}
    seen = [c.row.get("tokens_seen") for c in cks]
    if all(s is not None for s in seen):  # otherwise absent: no clock is better than a wrong one
        cols["tokens_seen"] = np.array(seen, np.int64)
    return cols
