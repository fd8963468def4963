"""What every run of a study shares: STUDY_DIR/shared/ (corpus, tokens and the traced validation
inputs trace/inputs.npy, built once), hard-linked into each new STUDY_DIR/runs/<name>/, and the
check that a run still has the shared tokenizer and validation tokens.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np

from tokenclock.artifacts import file_sha256, read_npy, write_json, write_npy
from tokenclock.errors import DataError, TokenizerError
from tokenclock.manifest import load_manifest
from tokenclock.rundir import RunDir, StudyDir
from tokenclock.stages.corpus.stage import build_corpus
from tokenclock.stages.tokens.stage import tokenize
from tokenclock.study.config import Study
from tokenclock.windows import val_windows


def digest(path: Path) -> str:
    """The first 16 hex digits of the file's sha256: what study.json records per shared input."""
    return file_sha256(path)[:16]


def _link_tree(src: Path, dst: Path) -> None:
    """Hard-link (copy across file systems) every file of src into dst."""
    dst.mkdir(parents=True, exist_ok=True)
    for f in src.iterdir():
        if f.is_file() and not f.name.startswith("."):
            target = dst / f.name
            if target.exists():
                continue
            try:
                os.link(f, target)
            except OSError:
                shutil.copy2(f, target)


def prepare_shared(sd: StudyDir, st: Study, progress: bool) -> dict:
    """Build corpus + tokens once in STUDY_DIR/shared and the traced inputs (n_seqs, seq_len + 1);
    returns their signature (study.json: shared)."""
    cfg = st.base_config
    shared = sd.shared
    build_corpus(shared.root, cfg.corpus, progress=progress)
    meta = tokenize(shared.root, cfg.tokens, progress=progress)
    tcfg = cfg.trace.resolved(cfg.train.seq_len, cfg.seed)
    seq_len, seed = tcfg.seq_len, tcfg.seed
    vstream = read_npy(shared.token_stream("val"), mmap=True)
    inputs = val_windows(vstream, seed, cfg.trace.n_seqs, seq_len)
    if not shared.trace_inputs.is_file() or not np.array_equal(read_npy(shared.trace_inputs), inputs):
        write_npy(shared.trace_inputs, inputs.astype(np.int32))
    return {"tokenizer": digest(shared.tokenizer), "val": digest(shared.token_stream("val")),
            "vocab_size": meta["vocab_size"], "seq_len": seq_len, "trace_seed": seed,
            "n_seqs": int(inputs.shape[0]), "n_tok": int(inputs.shape[0] * seq_len)}


def seed_run(sd: StudyDir, name: str) -> RunDir:
    """A new run directory whose corpus/ and tokens/ are the shared ones (their stages marked done)."""
    shared, run = sd.shared, sd.run(name)
    if not run.manifest.is_file():
        _link_tree(shared.corpus_dir, run.corpus_dir)
        _link_tree(shared.tokens_dir, run.tokens_dir)
        m = load_manifest(shared)
        m["stages"] = {k: v for k, v in m["stages"].items() if k in ("corpus", "tokens")}
        write_json(run.manifest, m)
    return run


def check_same_inputs(sd: StudyDir, names: list[str], sig: dict) -> None:
    """Refuse runs whose tokenizer or validation tokens differ from the shared ones."""
    bad_tok, bad_val = [], []
    for name in names:
        run = sd.run(name)
        if run.tokenizer.is_file() and digest(run.tokenizer) != sig["tokenizer"]:
            bad_tok.append(name)
        if run.token_stream("val").is_file() and digest(run.token_stream("val")) != sig["val"]:
            bad_val.append(name)
    if bad_tok:
        raise TokenizerError(f"runs {', '.join(bad_tok[:4])} use a different tokenizer than "
                             f"{sd.shared.root}", "a study needs one tokenizer: delete those run "
                             "directories (they are retrained) or use a new --out")
    if bad_val:
        raise DataError(f"runs {', '.join(bad_val[:4])} have a different validation set than "
                        f"{sd.shared.root}", "delete those run directories or use a new --out")
