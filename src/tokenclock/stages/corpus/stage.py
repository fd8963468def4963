"""The corpus stage: reads documents from the configured sources (sources.py, builtin.py) and splits
them by document into RUN/corpus/{train,val}.parquet (doc_id, source, text) plus RUN/corpus/stats.json.
"""
from __future__ import annotations

import contextlib
import dataclasses
import sys
from pathlib import Path

from tokenclock.artifacts import read_json, read_parquet, write_json, write_parquet
from tokenclock.errors import CorpusError
from tokenclock.lock import run_lock
from tokenclock.manifest import load_manifest, stage_config, stage_status
from tokenclock.rundir import RunDir
from tokenclock.stages.corpus.config import CorpusConfig
from tokenclock.stages.corpus.documents import Document, doc_unit, document_columns
from tokenclock.stages.corpus.sources import fingerprint, load_documents, missing_sources


def read_documents(cfg: CorpusConfig | None = None, *, progress: bool = False) -> list[Document]:
    """All documents of the configured corpus (after the max_chars cap), in a deterministic order."""
    return load_documents(cfg or CorpusConfig(), progress)[0]


def count_documents(cfg: CorpusConfig | None = None) -> dict:
    """Documents and characters of the configured corpus, in all and per source (nothing written:
    `tokenclock corpus` without --out)."""
    docs = read_documents(cfg)
    by_src: dict[str, dict] = {}
    for d in docs:
        s = by_src.setdefault(d.source, {"docs": 0, "chars": 0})
        s["docs"] += 1
        s["chars"] += len(d.text)
    return {"documents": len(docs), "chars": sum(s["chars"] for s in by_src.values()), "sources": by_src}


def split_documents(docs: list[Document], cfg: CorpusConfig) -> tuple[list[Document], list[Document]]:
    """Split by document: documents in hash(seed, doc_id) order go to val while val holds at most
    val_fraction of the characters; then at least min_val_docs validation and one training
    document. Order within each split follows `docs`."""
    n = len(docs)
    if n < 2:
        raise CorpusError(f"corpus has {n} document{'s' if n != 1 else ''}; a train/val split by "
                          "document needs at least 2",
                          "add more text, or split one large file into several (one per chapter)")
    if cfg.min_val_docs >= n:
        raise CorpusError(f"corpus has {n} documents but min_val_docs is {cfg.min_val_docs}",
                          f"lower corpus.min_val_docs below {n} or add documents")
    # Walk documents in hash order and take each into val while val stays within val_fraction of
    # the characters: a share of documents would let one whole book (the KJV is 15% of the
    # built-in corpus) make val 20% of the text and most of the traced tokens.
    units = [doc_unit(cfg.seed, d.doc_id) for d in docs]
    by_unit = sorted(range(n), key=lambda i: (units[i], docs[i].doc_id))
    budget = cfg.val_fraction * sum(len(d.text) for d in docs)
    val, used = set(), 0
    for i in by_unit:
        if used + len(docs[i].text) <= budget:
            val.add(i)
            used += len(docs[i].text)
    for i in by_unit:  # promote the lowest hashes until min_val_docs holds
        if len(val) >= cfg.min_val_docs:
            break
        val.add(i)
    if len(val) == n:  # keep one training document (the highest hash)
        val.discard(by_unit[-1])
    return ([d for i, d in enumerate(docs) if i not in val], [d for i, d in enumerate(docs) if i in val])


def build_corpus(run_dir, cfg: CorpusConfig | None = None, *, progress: bool = True) -> dict:
    """The `tokenclock corpus` stage: write RUN/corpus/{train,val}.parquet and stats.json.
    Skips (and returns the stats) when the stage is done with the same config and inputs."""
    run = RunDir(run_dir)
    cfg = cfg or CorpusConfig()
    cfg_dict = dataclasses.asdict(cfg)
    outputs = [run.corpus_split("train"), run.corpus_split("val"), run.corpus_stats]
    # one lock over the up-to-date check and the build (run.stage takes it again, re-entrantly)
    with run_lock(run, "corpus"):
        inputs = fingerprint(cfg)
        kept = _kept_corpus(run, cfg, cfg_dict, inputs, outputs, progress)
        if kept is not None:
            return kept
        for p in outputs:  # stats.json last-written = the completion marker; never mix old and new
            with contextlib.suppress(FileNotFoundError):
                p.unlink()
        with run.stage("corpus", cfg_dict, inputs=inputs) as st:
            try:
                docs, info = load_documents(cfg, progress)
                train, val = split_documents(docs, cfg)
                for split, part in (("train", train), ("val", val)):
                    write_parquet(run.corpus_split(split), document_columns(part), metadata={"split": split})
                stats = _stats(train, val, cfg, info)
                stats["seconds"] = round(st.seconds, 3)
                write_json(run.corpus_stats, stats)
            except BaseException:
                for p in outputs:
                    with contextlib.suppress(FileNotFoundError):
                        p.unlink()
                raise
    if progress:
        s = stats["splits"]
        print(f"corpus: {stats['n_docs']} documents, {stats['n_chars'] / 1e6:.1f}M chars "
              f"(train {s['train']['docs']} docs / val {s['val']['docs']} docs) -> {run.corpus_dir}",
              file=sys.stderr)
    return stats


def _kept_corpus(run: RunDir, cfg: CorpusConfig, cfg_dict: dict, inputs: dict, outputs: list[Path],
                 progress: bool) -> dict | None:
    """The stats of a corpus already built that stays: done with this config from the same inputs,
    or from sources that are gone (a run or study moved to another machine). None = build it."""
    built = (stage_status(run, "corpus") == "done" and stage_config(run, "corpus") == cfg_dict
             and all(p.is_file() for p in outputs)
             and not read_json(run.corpus_stats).get("fallback"))  # retry npm after a fallback
    if not built:
        return None
    recorded = load_manifest(run)["stages"].get("corpus", {}).get("inputs")
    gone = missing_sources(cfg)
    if recorded != inputs and gone:
        # the sources cannot be read again, and the corpus built from them is complete, so it stays
        print(f"tokenclock: warning: corpus source {gone[0]} is not there any more; keeping the "
              f"corpus already built in {run.corpus_dir}", file=sys.stderr)
        return read_json(run.corpus_stats)
    if recorded == inputs:
        if progress:
            print(f"corpus: up to date in {run.corpus_dir}", file=sys.stderr)
        return read_json(run.corpus_stats)
    return None


def read_split(run_dir, split: str) -> list[Document]:
    """The documents of RUN/corpus/<split>.parquet (for the tokens stage and notebooks)."""
    cols = read_parquet(RunDir(run_dir).corpus_split(split))
    return [Document(str(i), str(s), str(t)) for i, s, t in zip(cols["doc_id"], cols["source"], cols["text"])]


# ----------------------------------------------------------------------------- stats


def _stats(train: list[Document], val: list[Document], cfg: CorpusConfig, info: dict) -> dict:
    sources: dict[str, dict] = {}
    splits = {}
    for split, part in (("train", train), ("val", val)):
        splits[split] = {"docs": len(part), "chars": sum(len(d.text) for d in part)}
        for d in part:
            s = sources.setdefault(d.source, {"docs": 0, "chars": 0, "train_docs": 0, "train_chars": 0,
                                              "val_docs": 0, "val_chars": 0})
            s["docs"] += 1
            s["chars"] += len(d.text)
            s[f"{split}_docs"] += 1
            s[f"{split}_chars"] += len(d.text)
    return {"n_docs": len(train) + len(val), "n_chars": splits["train"]["chars"] + splits["val"]["chars"],
            "splits": splits, "sources": sources, "source_specs": list(cfg.sources) or ["builtin"],
            "val_fraction": cfg.val_fraction, "seed": cfg.seed, **info}


