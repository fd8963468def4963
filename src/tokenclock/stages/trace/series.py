"""Tracing checkpoint series that tokenclock did not train: Hugging Face revisions (Pythia, OLMo)
and local checkpoint folders. Reads each checkpoint with AutoModelForCausalLM and its own
tokenizer, and writes the same RUN/trace/ artifacts as the own-run trace (source "hf"), through
`trace_series`: along steps (T axis, `trace_revisions`) or along model size (M axis,
`trace_models`, column `n_params`). Names -> steps: revisions.py; one checkpoint: checkpoints.py.

torch is imported inside `_trace_locked` (start-up time).
"""
from __future__ import annotations

import dataclasses
import hashlib
import sys
from pathlib import Path

import numpy as np

from tokenclock.artifacts import write_json, write_npy, write_parquet
from tokenclock.errors import ConfigError, DataError, InputError, RunDirError, TokenizerError
from tokenclock.forward import quiet_transformers, resolve_device, trace_dtype
from tokenclock.manifest import Stage
from tokenclock.rundir import RunDir
from tokenclock.stages.corpus.config import CorpusConfig
from tokenclock.stages.corpus.stage import read_documents, split_documents
from tokenclock.stages.tokens.tokenizer import token_stream
from tokenclock.stages.trace import duplicates, suites
from tokenclock.stages.trace.checkpoints import Checkpoint, inspect_checkpoint, locate, model_loader, n_params_of
from tokenclock.stages.trace.config import TraceConfig
from tokenclock.stages.trace.revisions import parse_revision, read_step_map, resolve_revisions
from tokenclock.stages.trace.sanity import axis_warnings
from tokenclock.stages.trace.stage import MIN_CHECKPOINTS, token_table, trace_series
from tokenclock.windows import val_windows

DEFAULT_SEQ_LEN = 256  # an unset TraceConfig.seq_len means this here (there is no run to take it from)


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
    stream = token_stream(tok, [d.text for d in docs])
    if len(stream) < seq_len + 2:
        raise InputError(f"--text {text} gives {len(stream)} tokens, fewer than one sequence of {seq_len + 1}",
                         "pass more text or a smaller --seq-len")
    inputs = val_windows(stream, seed, cfg.n_seqs, seq_len, source=f"--text {text}", setting="n_seqs")
    return inputs, {"text": text, "n_docs": len(docs), "text_tokens": int(len(stream))}


class TableTokenizer:
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
    suite = suites.find(model, revisions, step_pattern) if smap is None and step_pattern is None else None
    suite_rec = None
    if suite is not None:  # a public suite: its branches, its step and tokens maps, its gaps reported
        names, suite_rec = suites.suite_revisions(model, suite)
    else:
        names = resolve_revisions(model, revisions, step_pattern, smap)
    cks = []
    for name in names:
        ck = locate(model, name)
        if smap is not None:
            if name not in smap:
                raise InputError(f"revision {name} is not in the step map {step_map}", "add a row for it")
            ck.row = dict(smap[name])
        elif suite is not None:
            ck.row = suite.row(name)
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
            "step_pattern": step_pattern, "step_map": str(step_map) if step_map else None, "suite": suite_rec}
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


def _resolved(cfg: TraceConfig) -> dict:
    """cfg with seq_len and seed resolved: there is no run to inherit them from (None, or the old
    spellings 0 and -1, mean DEFAULT_SEQ_LEN and seed 0 here)."""
    seed = 0 if cfg.seed is None or cfg.seed < 0 else cfg.seed
    return dataclasses.asdict(cfg) | {"seq_len": cfg.seq_len or DEFAULT_SEQ_LEN, "seed": seed}


def _trace(out, cks: list[Checkpoint], axis: str, conf: dict, cfg: TraceConfig | None, skip_bad: bool,
           same_model: bool, progress: bool) -> dict:
    quiet_transformers()
    cfg = cfg or TraceConfig()
    run = RunDir(out)
    conf = {**conf, "checkpoints": [c.label for c in cks], "skip_bad": skip_bad, "trace": _resolved(cfg)}
    skipped: list[dict] = []  # filled while checking; recorded with running and done
    with run.stage("trace", conf, skipped=skipped) as st:
        meta = _trace_locked(st, cks, axis, conf, cfg, skip_bad, same_model, progress, skipped)
        meta["tokens_per_second"] = meta["n_tok"] * meta["n_ckpt"] / max(st.seconds, 1e-9)
        st.record(summary=meta)
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


def _trace_locked(st: Stage, cks, axis, conf, cfg: TraceConfig, skip_bad, same_model, progress,
                  skipped: list[dict]) -> dict:
    import torch

    run = st.run

    seq_len, seed = conf["trace"]["seq_len"], conf["trace"]["seed"]
    try:
        if same_model:  # copies of one another under several labels, before any download or forward pass
            cks, dup = duplicates.screen(cks, skip_bad=skip_bad, skipped=skipped,
                                         hash_cache=run.trace_weight_hashes)
            st.note(duplicates=dup)
        good, info = _check_good(cks, skip_bad, skipped)
    finally:  # into the manifest now, so a failure below keeps the list
        st.note(skipped=skipped)
    _check_vocab(good, info, same_model, seq_len)
    ref = info[0]
    if axis == "n_params":
        for ck, inf in zip(good, info):
            ck.row = {"n_params": n_params_of(ck, inf["config"])}
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
    loaders = [(c.row, model_loader(c, torch_dtype, emb)) for c in good]
    sig = {"conf": conf, "kept": [c.label for c in good],
           "inputs_sha": hashlib.sha256(np.ascontiguousarray(inputs).tobytes()).hexdigest()}
    loss = trace_series(run, loaders, inputs, cfg, device, progress=progress, signature=sig)
    axis_cols = _axis_columns(good, axis)
    write_npy(run.trace_inputs, inputs.astype(np.int32))
    write_parquet(run.trace_axis, axis_cols)
    table = token_table(TableTokenizer(tok), inputs, None, cfg.context_tokens)
    table["train_count"] = np.full(len(table["tok_idx"]), -1, np.int64)  # no training split here
    table["unigram_loss"] = np.full(len(table["tok_idx"]), np.nan)
    write_parquet(run.trace_tokens, table)
    meta = {"n_tok": int(loss.shape[1]), "n_ckpt": int(loss.shape[0]), "vocab_size": len(tok),
            "seq_len": seq_len, "n_seqs": int(inputs.shape[0]), "axes": list(axis_cols), "source": "hf",
            "mode": conf["mode"], "suite": conf.get("suite"), "checkpoints": [c.label for c in good],
            "sources": [c.where() for c in good], "skipped": skipped, **text_info,
            "tokenizer": ref["fingerprint"], "train_counts": False,
            "train_counts_note": "no training split: train_count is -1 and unigram_loss NaN",
            "dtype": "bf16" if torch_dtype is torch.bfloat16 else "fp32",
            "mean_loss_first": float(np.mean(loss[0])), "mean_loss_last": float(np.mean(loss[-1])),
            "identical_rows": duplicates.note_rows(loss, [c.label for c in good]),
            "warnings": axis_warnings(loss, [c.label for c in good],
                                      [c.row["step"] for c in good] if axis == "step" else None, len(tok))}
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
