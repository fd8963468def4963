"""Readers for every kind of corpus source: text files, folders, jsonl, parquet, Hugging Face
datasets, the built-in corpus and the synthetic ones (synthetic.py), with the max_chars cap; plus
the fingerprint of the inputs that tells the corpus stage when to rebuild. Reads files; writes
nothing.
"""
from __future__ import annotations

import json
from pathlib import Path

from tokenclock.errors import CorpusError, InputError
from tokenclock.stages.corpus.builtin import BUILTIN_VERSION, builtin_documents
from tokenclock.stages.corpus.config import MIN_DOC_CHARS, CorpusConfig
from tokenclock.stages.corpus.documents import FILE_SUFFIXES, Document, doc_unit, normalize
from tokenclock.stages.corpus.synthetic import PREFIX as SYNTHETIC
from tokenclock.stages.corpus.synthetic import SYNTHETIC_VERSION, synthetic_documents


def load_documents(cfg: CorpusConfig, progress: bool) -> tuple[list[Document], dict]:
    info: dict = {"builtin": False, "fallback": None, "skipped_empty": 0, "decode_replaced": []}
    docs: list[Document] = []
    names: set[str] = set()
    specs = [s if not _is_path(s) else str(Path(s).expanduser().resolve()) for s in cfg.sources]
    for s, key in zip(cfg.sources, specs):
        if specs.count(key) > 1:
            raise InputError(f"corpus source {s} is listed {specs.count(key)} times", "list each source once")
    for spec in cfg.sources or ["builtin"]:
        if spec == "builtin":
            part = builtin_documents(cfg, info, progress)
        elif spec.startswith(SYNTHETIC):
            part = synthetic_documents(spec, cfg)
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



def _is_path(spec: str) -> bool:
    """A local file or folder, not builtin, hf:NAME or synthetic:NAME."""
    return spec != "builtin" and not spec.startswith(("hf:", SYNTHETIC))



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
        text = normalize(_decode(path.read_bytes(), path, cfg, info))
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
        text = normalize(value)
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
        text = normalize(value or "")
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
        text = normalize(value or "") if isinstance(value, str) or value is None else ""
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
            q.sort(key=lambda i: doc_unit(seed, docs[i].doc_id), reverse=True)
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



def fingerprint(cfg: CorpusConfig) -> dict:
    """Size and mtime of every input file, so a changed file re-runs the stage."""
    files = []
    for spec in filter(_is_path, cfg.sources):
        p = Path(spec).expanduser()
        for f in (sorted(q for q in p.rglob("*") if q.is_file()) if p.is_dir() else [p] if p.is_file() else []):
            st = f.stat()
            files.append([str(f), st.st_size, st.st_mtime_ns])
    out = {"files": files, "builtin": BUILTIN_VERSION if not cfg.sources or "builtin" in cfg.sources else None}
    if any(s.startswith(SYNTHETIC) for s in cfg.sources):  # only then: older runs keep their inputs
        out["synthetic"] = SYNTHETIC_VERSION
    return out



def missing_sources(cfg: CorpusConfig) -> list[str]:
    """Local files or folders in corpus.sources that do not exist (not builtin, hf: or synthetic:)."""
    return [spec for spec in cfg.sources if _is_path(spec) and not Path(spec).expanduser().exists()]
