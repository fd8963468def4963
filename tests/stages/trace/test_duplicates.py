"""Copies of weights under several labels, caught before a forward pass: a huggingface_hub cache
built the way the hub client writes it (blobs named by content, symlinked snapshots, refs), local
folders (hashed, cached by size and mtime), the hub's file metadata (recorded tree responses replayed
through huggingface_hub's own HTTP client, no network); after tracing, identical loss rows; the
axis sanity warnings. Offline."""
from __future__ import annotations

import hashlib
import json
import os
import shutil

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import pytest
from test_series import CFG

from tokenclock.artifacts import read_json, read_parquet
from tokenclock.errors import DataError
from tokenclock.rundir import RunDir
from tokenclock.stages.trace import duplicates
from tokenclock.stages.trace.checkpoints import Checkpoint
from tokenclock.stages.trace.config import TraceConfig
from tokenclock.stages.trace.sanity import axis_warnings
from tokenclock.stages.trace.series import trace_revisions

REPO = "EleutherAI/pythia-tiny"
LFS = (".safetensors", ".bin")


def _blob_name(name: str, data: bytes) -> str:
    """The hub's etag, which the cache names blobs by: sha256 for an LFS file, the git blob sha1 else."""
    if name.endswith(LFS):
        return hashlib.sha256(data).hexdigest()
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def build_hub_cache(cache, repo: str, branches: dict[str, dict[str, bytes]]) -> None:
    """cache/models--org--name/{blobs/ETAG, snapshots/COMMIT/FILE -> ../../blobs/ETAG, refs/BRANCH}."""
    root = cache / f"models--{repo.replace('/', '--')}"
    for branch, files in branches.items():
        commit = hashlib.sha1(branch.encode()).hexdigest()
        (root / "refs").mkdir(parents=True, exist_ok=True)
        (root / "refs" / branch).write_text(commit)
        snap = root / "snapshots" / commit
        snap.mkdir(parents=True, exist_ok=True)
        for name, data in files.items():
            blob = root / "blobs" / _blob_name(name, data)
            blob.parent.mkdir(parents=True, exist_ok=True)
            if not blob.exists():
                blob.write_bytes(data)
            (snap / name).symlink_to(os.path.join("..", "..", "blobs", blob.name))


def _folder_files(folder) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}


def _resaved(src, dst, metadata: dict, scale: float = 1.0) -> None:
    """dst: src's tensors (times scale) in a safetensors file with other header metadata (other
    bytes; the same weights when scale is 1)."""
    from safetensors.numpy import load_file, save_file

    shutil.copytree(src, dst, dirs_exist_ok=True)
    tensors = {k: (v * np.asarray(scale, v.dtype)) for k, v in load_file(src / "model.safetensors").items()}
    save_file(tensors, dst / "model.safetensors", metadata=metadata)


@pytest.fixture(scope="module")
def hub_cache(series, tmp_path_factory):
    """A cache of REPO: step0..step16 as traced, a final step32, main = step32; step0, step1 and
    step2 serve main's weights (as pythia-2.8b's early branches do)."""
    root = series["root"]
    step32 = tmp_path_factory.mktemp("s32") / "step32"
    _resaved(root / "step16", step32, {"format": "pt"}, scale=1.02)
    cache = tmp_path_factory.mktemp("hf") / "hub"
    final = _folder_files(step32)
    branches = {f"step{s}": _folder_files(root / f"step{s}") for s in (0, 1, 2, 4, 8, 16)}
    for s in (0, 1, 2):
        branches[f"step{s}"]["model.safetensors"] = final["model.safetensors"]
    branches |= {"step32": final, "main": final}
    build_hub_cache(cache, REPO, branches)
    return cache


@pytest.fixture
def use_cache(hub_cache, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(hub_cache))
    return hub_cache


REVS = "step0,step1,step2,step4,step8,step16,step32"


def test_hub_cache_copies_refused(use_cache, series, tmp_path, capsys):
    from tokenclock.cli import main

    with pytest.raises(DataError, match=r"same weights: step0, step1, step2, step32, main \(identical weights"):
        trace_revisions(tmp_path / "r", REPO, REVS, str(series["text"]), TraceConfig(**CFG), progress=False)
    assert not RunDir(tmp_path / "r").trace_loss.exists()  # refused before any forward pass
    args = ["trace", "--model", REPO, "--revisions", REVS, "--text", str(series["text"]),
            "--out", str(tmp_path / "c"), "--n-seqs", "4", "--seq-len", "16", "--quiet"]
    assert main(args) == DataError.exit_code
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "step0, step1, step2, step32, main" in err[0] and "--skip-bad" in err[0]


def test_hub_cache_skip_bad_keeps_latest(use_cache, series, tmp_path):
    out = tmp_path / "r"
    meta = trace_revisions(out, REPO, REVS, str(series["text"]), TraceConfig(**CFG), skip_bad=True,
                           progress=False)
    run = RunDir(out)
    assert list(read_parquet(run.trace_axis)["step"]) == [4, 8, 16, 32]
    assert meta["checkpoints"] == ["step4", "step8", "step16", "step32"]
    stage = read_json(run.manifest)["stages"]["trace"]
    dropped = {s["checkpoint"]: s["reason"] for s in stage["skipped"]}
    assert list(dropped) == ["step0", "step1", "step2"]
    assert all(r.startswith("same weights as step32") for r in dropped.values())
    assert stage["duplicates"]["groups"] == [["step0", "step1", "step2", "step32", "main"]]
    assert set(stage["duplicates"]["source"].values()) == {"hub cache"}
    assert meta["identical_rows"] == [] and meta["warnings"] == []


def test_local_copies_and_hash_cache(series, tmp_path):
    root = tmp_path / "local"
    shutil.copytree(series["root"], root)
    shutil.copy(root / "step0" / "model.safetensors", root / "step1" / "model.safetensors")  # pythia #83
    cks = [Checkpoint(f"step{s}", str(root / f"step{s}"), None) for s in (0, 1, 2, 4, 8, 16)]
    cache_file = tmp_path / "weight_sha256.json"
    with pytest.raises(DataError, match=r"step0, step1 \(identical weights"):
        duplicates.screen(cks, skip_bad=False, skipped=[], hash_cache=cache_file)
    skipped: list[dict] = []
    kept, rec = duplicates.screen(cks, skip_bad=True, skipped=skipped, hash_cache=cache_file)
    assert [c.label for c in kept] == ["step1", "step2", "step4", "step8", "step16"]
    assert [s["checkpoint"] for s in skipped] == ["step0"] and rec["dropped"] == ["step0"]
    # the hashes are cached by (size, mtime): a forged cache entry is believed, so nothing is re-read
    cache = read_json(cache_file)
    assert len(cache) == 6
    forged = cache[str((root / "step4" / "model.safetensors").resolve())][2]
    cache[str((root / "step8" / "model.safetensors").resolve())][2] = forged
    cache_file.write_text(json.dumps(cache))
    with pytest.raises(DataError, match=r"step4, step8"):
        duplicates.screen(cks, skip_bad=False, skipped=[], hash_cache=cache_file)
    os.utime(root / "step8" / "model.safetensors", ns=(1, 1))  # changed mtime: hashed again
    with pytest.raises(DataError) as e:
        duplicates.screen(cks, skip_bad=False, skipped=[], hash_cache=cache_file)
    assert "step8" not in str(e.value)


def test_shared_shard_is_a_group():
    """pythia-12b: two mid-run branches share only the first shard with the final model."""
    ids = [{"a-1": "x1", "a-2": "y1"}, {"a-1": "F", "a-2": "y2"}, {"a-1": "x3", "a-2": "y3"},
           {"a-1": "F", "a-2": "y4"}, {"a-1": "F", "a-2": "yF"}]
    assert duplicates.groups(ids) == [[1, 3, 4]]
    assert duplicates.weight_names(["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors",
                                    "pytorch_model.bin", "training_args.bin", "config.json"]) == [
        "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"]


def _tree(files: dict[str, str]) -> list[dict]:
    """A /api/models/REPO/tree/REV response as the hub writes it (an LFS file carries lfs.oid = sha256)."""
    out = [{"type": "file", "oid": "a" * 40, "size": 700, "path": "config.json"}]
    for name, sha in files.items():
        out.append({"type": "file", "oid": hashlib.sha1(sha.encode()).hexdigest(), "size": 10 ** 9, "path": name,
                    "lfs": {"oid": sha, "size": 10 ** 9, "pointerSize": 134}})
    return out


def test_online_metadata_before_download(recorded_hub):
    """The whole series is checked from the hub's LFS sha256s: pythia-12b's shard-1 copies."""
    answers, asked = recorded_hub
    shards = ("pytorch_model-00001-of-00003.bin", "pytorch_model-00002-of-00003.bin",
              "pytorch_model-00003-of-00003.bin")
    final = {s: hashlib.sha256(f"final{i}".encode()).hexdigest() for i, s in enumerate(shards)}
    revs = ["step49000", "step50000", "step51000", "step142000", "step143000"]
    for rev in revs + ["main"]:
        files = {s: hashlib.sha256(f"{rev}{i}".encode()).hexdigest() for i, s in enumerate(shards)}
        if rev in ("step50000", "step143000", "main"):
            files[shards[0]] = final[shards[0]]
        if rev in ("step143000", "main"):
            files = dict(final)
        answers[f"/api/models/EleutherAI/pythia-12b/tree/{rev}"] = _tree(files)
    cks = [Checkpoint(r, "EleutherAI/pythia-12b", r) for r in revs]
    with pytest.raises(DataError, match=r"step50000, step143000, main \(1 shared weight file\(s\)"):
        duplicates.screen(cks, skip_bad=False, skipped=[])
    assert "/api/models/EleutherAI/pythia-12b/tree/step50000" in asked
    skipped: list[dict] = []
    kept, rec = duplicates.screen(cks, skip_bad=True, skipped=skipped)
    assert [c.label for c in kept] == ["step49000", "step51000", "step142000", "step143000"]
    assert set(rec["source"].values()) == {"hub"} and skipped[0]["checkpoint"] == "step50000"


def test_unreachable_hub_is_unchecked_not_refused(recorded_hub):
    cks = [Checkpoint(r, "org/none", r) for r in ("step1", "step2")]
    kept, rec = duplicates.screen(cks, skip_bad=False, skipped=[])
    assert len(kept) == 2 and rec["unchecked"] == ["step1", "step2"] and rec["checked"] == 0


def test_identical_rows_and_step0_warning(series, tmp_path, capsys):
    """Same tensors re-saved with other header bytes pass the file net; the row net and the step-0
    check catch them."""
    root = tmp_path / "resaved"
    shutil.copytree(series["root"], root)
    _resaved(series["root"] / "step16", root / "step0", {"format": "pt", "note": "relabelled"})
    meta = trace_revisions(tmp_path / "r", str(root), "all", str(series["text"]), TraceConfig(**CFG),
                           progress=False)
    assert meta["identical_rows"] == [["step0", "step16"]]
    assert [w["kind"] for w in meta["warnings"]] == ["step0_not_fresh"]
    assert meta["warnings"][0]["checkpoint"] == "step0"
    err = capsys.readouterr().err
    assert "step0, step16 give identical loss rows" in err and "step0 (step 0) has mean loss" in err
    assert read_json(RunDir(tmp_path / "r").trace_meta)["identical_rows"] == [["step0", "step16"]]
    from tokenclock.stages.report.headline import trace_flags

    numbers: dict = {}
    notes = "".join(trace_flags(RunDir(tmp_path / "r"), meta, numbers))
    assert "identical loss rows: step0, step16" in notes and "step0 (step 0) has mean loss" in notes
    assert len(numbers["trace_flags"]) == 2  # also in report/summary.json


def test_axis_warnings_known_answers():
    rng = np.random.default_rng(0)
    v = 1000
    curve = np.log(v) * np.array([1.0, 0.8, 0.6, 0.5, 0.45, 0.42])[:, None]
    loss = (curve + rng.normal(0, 0.05, (6, 400))).astype(np.float32)
    labels = [f"s{i}" for i in range(6)]
    steps = [0, 1, 2, 4, 8, 16]
    assert axis_warnings(loss, labels, steps, v) == []
    bad = loss.copy()
    bad[3] = loss[0] + 0.1  # a late label serving an early model
    w = axis_warnings(bad, labels, steps, v)
    assert [x["kind"] for x in w] == ["out_of_order"] and w[0]["checkpoint"] == "s3"
    copy0 = loss.copy()
    copy0[0] = loss[-1] + 0.2
    w = axis_warnings(copy0, labels, steps, v)
    assert [x["kind"] for x in w] == ["step0_not_fresh"]
    # without a step 0 the first row is not judged, and its neighbour looks out of order instead
    assert [x["checkpoint"] for x in axis_warnings(copy0, labels, [1, 2, 3, 4, 5, 6], v)] == ["s1"]
