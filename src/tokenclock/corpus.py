"""The corpus stage: read documents (own text files, folders, jsonl, parquet, a Hugging Face dataset,
or the built-in public-domain corpus of builtin_corpus.py) and split them by document into
RUN/corpus/{train,val}.parquet (doc_id, source, text) plus RUN/corpus/stats.json.
"""
from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from .errors import ConfigError, CorpusError, InputError

FILE_SUFFIXES = (".txt", ".md", ".jsonl", ".parquet")
MIN_DOC_CHARS = 256  # a max_chars cap never cuts a document shorter than this


@dataclass(frozen=True)
class Document:
    """One document: the unit of the train/val split."""

    doc_id: str  # unique within a corpus, stable across machines (no absolute paths)
    source: str  # short source name: gutenberg, sotu, brown, or the stem of a user's file/folder
    text: str


@dataclass
class CorpusConfig:
    """Where the text comes from and how it is split. Saved in the run's manifest."""

    sources: list[str] = field(default_factory=list)
    """Empty = the built-in corpus. Otherwise text files (.txt/.md: one document each), folders
    (recursively *.txt, *.md, *.jsonl, *.parquet), .jsonl (one document per line, `text_field`),
    .parquet (one document per row, column `text_field`), `hf:NAME[:CONFIG][:SPLIT]` (a Hugging Face
    dataset; needs `datasets` and the network), or `builtin` (mix the built-in corpus in)."""
    text_field: str = "text"
    """Field (jsonl), column (parquet) or feature (hf:) that holds the text."""
    val_fraction: float = 0.05
    """Share of documents sent to validation, chosen by a hash of (seed, doc_id); in [0, 1)."""
    min_val_docs: int = 1
    """At least this many validation documents (the lowest hashes are promoted if needed)."""
    seed: int = 0
    """Seed of the split hash (a different seed gives a different, equally deterministic split)."""
    max_chars: int | None = None
    """Cap on the total characters (tests, demos): documents are sampled round-robin over sources
    and cut to a common length so the total fits; None = no cap."""
    cache_dir: str | None = None
    """Where the built-in corpus is cached; None = $XDG_CACHE_HOME/tokenclock or ~/.cache/tokenclock."""
    on_decode_error: str = "error"
    """Bytes that are not UTF-8: "error" stops with the file and byte offset; "replace" decodes
    them as U+FFFD and records the file in stats.json."""

    def __post_init__(self) -> None:
        if isinstance(self.sources, str):
            self.sources = [self.sources]
        if not isinstance(self.sources, (list, tuple)) or not all(
                isinstance(s, str) and s.strip() for s in self.sources):
            raise ConfigError(f"corpus.sources must be a list of non-empty paths, got {self.sources!r}",
                              "write e.g. sources: [data/books, extra.jsonl]")
        self.sources = list(self.sources)
        for s in self.sources:
            if s.startswith("hf:") and not s[3:].split(":")[0]:
                raise ConfigError(f"corpus source {s!r} has no dataset name", "write hf:NAME[:CONFIG][:SPLIT]")
        if not self.text_field:
            raise ConfigError("corpus.text_field is empty", "name the field that holds the text, e.g. text")
        if not 0.0 <= self.val_fraction < 1.0:
            raise ConfigError(f"corpus.val_fraction must be in [0, 1), got {self.val_fraction}",
                              "use e.g. 0.05")
        if self.min_val_docs < 1:  # later stages trace and evaluate on validation text
            raise ConfigError(f"corpus.min_val_docs must be >= 1, got {self.min_val_docs}")
        if self.max_chars is not None and self.max_chars < 2 * MIN_DOC_CHARS:
            raise ConfigError(f"corpus.max_chars must be >= {2 * MIN_DOC_CHARS} or null, got {self.max_chars}")
        if self.on_decode_error not in ("error", "replace"):
            raise ConfigError(f"corpus.on_decode_error must be 'error' or 'replace', got {self.on_decode_error!r}")


# ----------------------------------------------------------------------------- public API


def read_documents(cfg: CorpusConfig | None = None, *, progress: bool = False) -> list[Document]:
    """All documents of the configured corpus (after the max_chars cap), in a deterministic order."""
    return _load(cfg or CorpusConfig(), progress)[0]


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
    units = [_unit(cfg.seed, d.doc_id) for d in docs]
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
    from .rundir import (RunDir, read_json, run_lock, stage_config, stage_status, update_stage,
                         write_json, write_parquet)

    run = RunDir(run_dir)
    cfg = cfg or CorpusConfig()
    cfg_dict = dataclasses.asdict(cfg)
    outputs = [run.corpus_split("train"), run.corpus_split("val"), run.corpus_stats]
    with run_lock(run, "corpus"):
        inputs = _fingerprint(cfg)
        built = (stage_status(run, "corpus") == "done" and stage_config(run, "corpus") == cfg_dict
                 and all(p.is_file() for p in outputs)
                 and not read_json(run.corpus_stats).get("fallback"))  # retry npm after a fallback
        gone = _missing_sources(cfg)
        if built and _stage_inputs(run) != inputs and gone:
            # a run (or study) moved to another machine: the sources cannot be read again, and the
            # corpus built from them is complete, so it stays
            print(f"tokenclock: warning: corpus source {gone[0]} is not there any more; keeping the "
                  f"corpus already built in {run.corpus_dir}", file=sys.stderr)
            return read_json(run.corpus_stats)
        if built and _stage_inputs(run) == inputs:
            if progress:
                print(f"corpus: up to date in {run.corpus_dir}", file=sys.stderr)
            return read_json(run.corpus_stats)
        for p in outputs:  # stats.json last-written = the completion marker; never mix old and new
            with contextlib.suppress(FileNotFoundError):
                p.unlink()
        t0 = time.perf_counter()
        update_stage(run, "corpus", "running", config=cfg_dict, inputs=inputs)
        try:
            docs, info = _load(cfg, progress)
            train, val = split_documents(docs, cfg)
            for split, part in (("train", train), ("val", val)):
                write_parquet(run.corpus_split(split), _columns(part), metadata={"split": split})
            stats = _stats(train, val, cfg, info)
            stats["seconds"] = round(time.perf_counter() - t0, 3)
            write_json(run.corpus_stats, stats)
        except BaseException as e:
            for p in outputs:
                with contextlib.suppress(FileNotFoundError):
                    p.unlink()
            update_stage(run, "corpus", "failed", error=str(e).splitlines()[0] if str(e) else type(e).__name__)
            raise
        update_stage(run, "corpus", "done", config=cfg_dict, inputs=inputs,
                     seconds=time.perf_counter() - t0)
    if progress:
        s = stats["splits"]
        print(f"corpus: {stats['n_docs']} documents, {stats['n_chars'] / 1e6:.1f}M chars "
              f"(train {s['train']['docs']} docs / val {s['val']['docs']} docs) -> {run.corpus_dir}",
              file=sys.stderr)
    return stats


def _columns(docs: list[Document]) -> dict:
    import pyarrow as pa

    return {name: pa.array([getattr(d, name) for d in docs], type=pa.string())
            for name in ("doc_id", "source", "text")}


def read_split(run_dir, split: str) -> list[Document]:
    """The documents of RUN/corpus/<split>.parquet (for the tokens stage and notebooks)."""
    from .rundir import RunDir, read_parquet

    cols = read_parquet(RunDir(run_dir).corpus_split(split))
    return [Document(str(i), str(s), str(t)) for i, s, t in zip(cols["doc_id"], cols["source"], cols["text"])]


# ----------------------------------------------------------------------------- loading


def _load(cfg: CorpusConfig, progress: bool) -> tuple[list[Document], dict]:
    info: dict = {"builtin": False, "fallback": None, "skipped_empty": 0, "decode_replaced": []}
    docs: list[Document] = []
    names: set[str] = set()
    specs = [s if s == "builtin" or s.startswith("hf:") else str(Path(s).expanduser().resolve())
             for s in cfg.sources]
    for s, key in zip(cfg.sources, specs):
        if specs.count(key) > 1:
            raise InputError(f"corpus source {s} is listed {specs.count(key)} times", "list each source once")
    for spec in cfg.sources or ["builtin"]:
        if spec == "builtin":
            from .builtin_corpus import _builtin_documents  # here: it imports Document from us

            part = _builtin_documents(cfg, info, progress)
        elif spec.startswith("hf:"):
            part = _hf_documents(spec, cfg, _unique(spec[3:].split(":")[0].split("/")[-1], names), info)
        else:
            part = _path_documents(spec, cfg, names, info)
        docs.extend(part)
    if not docs or sum(len(d.text) for d in docs) == 0:
        raise CorpusError(f"corpus is empty (sources: {', '.join(cfg.sources) or 'builtin'})",
                          "pass files that contain text")
    if cfg.max_chars is not None:
        before = sum(len(d.text) for d in docs)
        docs = _cap_chars(docs, cfg.max_chars, cfg.seed)
        info["max_chars_cut"] = {"chars_before": before, "docs_kept": len(docs)}
    return docs, info


def _unique(name: str, names: set[str]) -> str:
    out, k = name or "source", 2
    while out in names:
        out, k = f"{name}-{k}", k + 1
    names.add(out)
    return out


def _path_documents(spec: str, cfg: CorpusConfig, names: set[str], info: dict) -> list[Document]:
    path = Path(spec).expanduser()
    if not path.exists():
        raise InputError(f"corpus source {spec} does not exist",
                         "check the path, or pass hf:NAME for a Hugging Face dataset")
    if path.is_dir():
        files = sorted((p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in FILE_SUFFIXES
                        and not any(part.startswith(".") for part in p.relative_to(path).parts)),
                       key=lambda p: p.relative_to(path).as_posix())
        if not files:
            raise InputError(f"folder {spec} has no {'/'.join('*' + s for s in FILE_SUFFIXES)} files",
                             "point --source at the folder that holds the text files")
        source = _unique(path.resolve().name, names)
        docs = []
        for p in files:
            docs.extend(_file_documents(p, f"{source}/{p.relative_to(path).as_posix()}", source, cfg,
                                        info, in_folder=True))
        if not docs:
            raise InputError(f"folder {spec} holds no text (all {len(files)} files are empty)",
                             "add text to the files or pass another folder")
        return docs
    if path.suffix.lower() not in FILE_SUFFIXES:
        raise InputError(f"unknown corpus source kind: {spec}",
                         "pass a folder, a .txt/.md/.jsonl/.parquet file, or hf:NAME[:CONFIG][:SPLIT]")
    source = _unique(path.stem, names)
    return _file_documents(path, f"{source}/{path.name}", source, cfg, info, in_folder=False)


def _file_documents(path: Path, doc_id: str, source: str, cfg: CorpusConfig, info: dict,
                    in_folder: bool) -> list[Document]:
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        docs = _parquet_documents(path, doc_id, source, cfg, info)
    elif suffix == ".jsonl":
        docs = _jsonl_documents(path, doc_id, source, cfg, info)
    else:
        text = _normalize(_decode(path.read_bytes(), path, cfg, info))
        docs = [Document(doc_id, source, text)] if text else []
        if not text and in_folder:
            info["skipped_empty"] += 1
            return []
    if not docs and not in_folder:
        raise InputError(f"{path} is empty (no text after stripping whitespace)",
                         "pass a file that contains text")
    return docs


def _decode(data: bytes, path: Path, cfg: CorpusConfig, info: dict) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        if cfg.on_decode_error == "replace":
            info["decode_replaced"].append(str(path))
            return data.decode("utf-8-sig", errors="replace")
        raise InputError(f"{path} is not UTF-8 (byte 0x{data[e.start]:02x} at offset {e.start})",
                         f"convert it, e.g. iconv -f LATIN1 -t UTF-8 {path} > {path.stem}.utf8{path.suffix}, "
                         "or set corpus.on_decode_error=replace") from None


def _normalize(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n").strip()


def _jsonl_documents(path: Path, doc_id: str, source: str, cfg: CorpusConfig, info: dict) -> list[Document]:
    docs = []
    for lineno, line in enumerate(_decode(path.read_bytes(), path, cfg, info).split("\n"), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise InputError(f"{path}:{lineno}: not valid JSON ({e.msg})",
                             "write one JSON object per line") from None
        if not isinstance(row, dict) or cfg.text_field not in row:
            keys = ", ".join(list(row)[:8]) if isinstance(row, dict) else type(row).__name__
            raise InputError(f"{path}:{lineno}: no '{cfg.text_field}' field (has: {keys})",
                             "set corpus.text_field to the field that holds the text")
        value = row[cfg.text_field]
        if value is None:
            value = ""
        if not isinstance(value, str):
            raise InputError(f"{path}:{lineno}: field '{cfg.text_field}' is a {type(value).__name__}, not text",
                             "set corpus.text_field to a string field")
        text = _normalize(value)
        if text:
            docs.append(Document(f"{doc_id}:{lineno}", source, text))
        else:
            info["skipped_empty"] += 1
    return docs


def _parquet_documents(path: Path, doc_id: str, source: str, cfg: CorpusConfig, info: dict) -> list[Document]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        schema = pq.read_schema(path)
    except Exception as e:  # pyarrow raises several types for corrupt files
        raise InputError(f"{path} is not a readable parquet file ({type(e).__name__})",
                         "check the file, or export it again") from None
    if cfg.text_field not in schema.names:
        raise InputError(f"{path} has no column '{cfg.text_field}' (has: {', '.join(schema.names[:8])})",
                         "set corpus.text_field to the column that holds the text")
    typ = schema.field(cfg.text_field).type
    if not (pa.types.is_string(typ) or pa.types.is_large_string(typ)):
        raise InputError(f"{path}: column '{cfg.text_field}' is {typ}, not text",
                         "set corpus.text_field to a string column")
    docs = []
    for row, value in enumerate(pq.read_table(path, columns=[cfg.text_field]).column(0).to_pylist()):
        text = _normalize(value or "")
        if text:
            docs.append(Document(f"{doc_id}:{row}", source, text))
        else:
            info["skipped_empty"] += 1
    return docs


def _hf_documents(spec: str, cfg: CorpusConfig, source: str, info: dict) -> list[Document]:
    parts = spec[3:].split(":")
    name, config = parts[0], (parts[1] or None) if len(parts) > 1 else None
    split = parts[2] if len(parts) > 2 and parts[2] else "train"
    try:
        import datasets  # lazy: optional dependency
    except ImportError:
        raise CorpusError(f"corpus source {spec} needs the `datasets` package",
                          "pip install 'tokenclock[datasets]', or download the data and pass the files") from None
    try:
        ds = datasets.load_dataset(name, config, split=split)
    except Exception as e:
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise CorpusError(f"could not load {spec}: {msg}",
                          "check the name, config and split, and that you are online; "
                          "or download the data and pass the files") from None
    if cfg.text_field not in ds.column_names:
        raise InputError(f"{spec} has no column '{cfg.text_field}' (has: {', '.join(ds.column_names[:8])})",
                         "set corpus.text_field to the column that holds the text")
    docs = []
    for row, value in enumerate(ds[cfg.text_field]):
        text = _normalize(value or "") if isinstance(value, str) or value is None else ""
        if text:
            docs.append(Document(f"{source}/{split}:{row}", source, text))
        else:
            info["skipped_empty"] += 1
    return docs


def _cap_chars(docs: list[Document], max_chars: int, seed: int) -> list[Document]:
    """Keep at most max_chars characters: sample documents round-robin over sources (by hash order)
    so that each keeps >= MIN_DOC_CHARS, then cut all to the common length that fits (water-filling)."""
    if sum(len(d.text) for d in docs) <= max_chars:
        return docs
    k = max(2, min(len(docs), max_chars // MIN_DOC_CHARS))
    if k < len(docs):
        queues: dict[str, list[int]] = {}
        for i, d in enumerate(docs):
            queues.setdefault(d.source, []).append(i)
        for q in queues.values():
            q.sort(key=lambda i: _unit(seed, docs[i].doc_id), reverse=True)
        chosen: set[int] = set()
        while len(chosen) < k:
            for q in queues.values():
                if q and len(chosen) < k:
                    chosen.add(q.pop())
        docs = [d for i, d in enumerate(docs) if i in chosen]
    lengths = sorted(len(d.text) for d in docs)
    cap, used = lengths[-1], 0
    for i, n in enumerate(lengths):
        if used + n * (len(lengths) - i) > max_chars:
            cap = (max_chars - used) // (len(lengths) - i)
            break
        used += n
    return [d if len(d.text) <= cap else Document(d.doc_id, d.source, d.text[:cap].rstrip()) for d in docs]


def _unit(seed: int, doc_id: str) -> float:
    """A uniform number in [0, 1) from (seed, doc_id); the same on every machine."""
    digest = hashlib.sha256(f"{seed}\0{doc_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0 ** 64


def _fingerprint(cfg: CorpusConfig) -> dict:
    """Size and mtime of every input file, so a changed file re-runs the stage."""
    from .builtin_corpus import BUILTIN_VERSION  # here: builtin_corpus imports this module

    files = []
    for spec in cfg.sources:
        p = Path(spec).expanduser()
        for f in (sorted(q for q in p.rglob("*") if q.is_file()) if p.is_dir() else [p] if p.is_file() else []):
            st = f.stat()
            files.append([str(f), st.st_size, st.st_mtime_ns])
    return {"files": files, "builtin": BUILTIN_VERSION if not cfg.sources or "builtin" in cfg.sources else None}


def _missing_sources(cfg: CorpusConfig) -> list[str]:
    """Local files or folders in corpus.sources that do not exist (not builtin, not hf:)."""
    return [spec for spec in cfg.sources if spec != "builtin" and not str(spec).startswith("hf:")
            and not Path(spec).expanduser().exists()]


def _stage_inputs(run) -> dict | None:
    from .rundir import load_manifest

    return load_manifest(run)["stages"].get("corpus", {}).get("inputs")


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


def write_sample_texts(folder: str | Path, min_chars: int = 500) -> Path:
    """Write a small offline English corpus into `folder`: Python's own documentation topics
    (shipped with every CPython), one `<topic>.txt` per topic longer than `min_chars`. Tests,
    benchmarks and the crash test train on it without npm; pass the folder as a corpus source."""
    from pydoc_data.topics import topics

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in sorted(topics.items()):
        if len(text) > min_chars:
            (folder / f"{name}.txt").write_text(text)
    return folder
