"""A run's trace shared as a Hugging Face dataset, and read back: per axis a `<axis>/losses.npz`
(the paper's format, written by stages/trace/npz.py), parquet tables of the tokens and (when
fitted) the events, a `manifest.yaml` with every file's shape, byte size and sha256, and a dataset
card (README.md with YAML front matter) that `datasets.load_dataset(DIR)` and the hub read.
`import_dataset` verifies every checksum before it writes anything.
"""
from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import yaml

from tokenclock.artifacts import file_sha256, read_json
from tokenclock.errors import DataError, InputError, RunDirError
from tokenclock.manifest import load_manifest, versions
from tokenclock.rundir import RunDir
from tokenclock.stages.trace.npz import MIN_POINTS, export_npz, import_npz

SCHEMA = "tokenclock-dataset/1"
MANIFEST = "manifest.yaml"
CARD = "README.md"
AXIS_NPZ = "{axis}/losses.npz"  # per axis, in the paper's format
LICENSE = "cc-by-4.0"  # the card's default licence for exported losses (--license to change)



def _entry(root: Path, rel: str, **extra) -> dict:
    p = root / rel
    return {"path": rel, "bytes": p.stat().st_size, "sha256": file_sha256(p), **extra}


def export_dataset(run_dir: str | Path, out_dir: str | Path, *, license: str = LICENSE,
                   command: str | None = None) -> dict:
    """Write RUN's trace (and fit, when present) into the new directory OUT as a dataset; returns
    the manifest. OUT is assembled beside itself and renamed into place: never half-written."""
    run, out = RunDir(run_dir), Path(out_dir)
    if not run.trace_loss.is_file() or not run.trace_axis.is_file():
        raise RunDirError(f"{run.root} has no finished trace ({run.trace_loss.name}, {run.trace_axis.name})",
                          f"run `{run.command('trace')}` first")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise InputError(f"{out} already exists and is not empty", "pass a new directory to --hf-dataset")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes it private; a dataset is for sharing
    try:
        manifest = _write(run, tmp, license, command)
        if out.is_dir():
            out.rmdir()
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return manifest


def _write(run: RunDir, root: Path, license: str, command: str | None) -> dict:
    axes_table = pq.read_table(run.trace_axis)
    files, axes = [], []
    for name in axes_table.column_names:
        x = np.asarray(axes_table.column(name).to_numpy(), dtype=np.float64)
        if (x > 0).sum() < MIN_POINTS or not (np.diff(x[x > 0]) > 0).all():
            continue  # not a usable log axis (e.g. a constant column)
        rel = AXIS_NPZ.format(axis=name)
        export_npz(run.root, root / rel, axis=name)
        with np.load(root / rel, allow_pickle=False) as z:
            shapes = {k: list(z[k].shape) for k in ("axis_values", "loss_matrix", "sample_id", "token_pos")}
        files.append(_entry(root, rel, kind="losses", axis=name, shapes=shapes))
        axes.append(name)
    if not axes:
        raise DataError(f"{run.trace_axis} has no axis with {MIN_POINTS}+ increasing positive values",
                        "trace more checkpoints")
    tables = {"tokens": run.trace_tokens, "events": run.fit_events, "fit_tokens": run.fit_tokens}
    configs = []
    for name, src in tables.items():
        if not src.is_file():
            continue
        rel = f"data/{name}.parquet"
        (root / "data").mkdir(exist_ok=True)
        shutil.copyfile(src, root / rel)
        meta = pq.read_metadata(root / rel)
        files.append(_entry(root, rel, kind="table", rows=meta.num_rows, columns=meta.schema.names))
        configs.append(name)
    trace_meta = read_json(run.trace_meta) if run.trace_meta.is_file() else {}
    man = load_manifest(run)
    manifest = {"schema": SCHEMA, "created": time.strftime("%Y-%m-%dT%H:%M:%S"), "axes": axes,
                "n_tok": int(files[0]["shapes"]["loss_matrix"][0]),
                "n_ckpt": int(np.load(run.trace_loss, mmap_mode="r").shape[0]), "source_run": str(run.root),
                "trace": {k: trace_meta.get(k) for k in ("source", "mode", "checkpoints", "sources", "text",
                                                          "seq_len", "n_seqs", "vocab_size", "dtype", "tokenizer")
                          if k in trace_meta},
                "versions_traced": man.get("versions"), "versions_exported": versions(),
                "command": command or f"tokenclock export {run.root} --hf-dataset {root.name}", "files": files}
    with open(root / MANIFEST, "w") as fh:
        yaml.safe_dump(manifest, fh, sort_keys=False)
    (root / CARD).write_text(_card(manifest, configs, license))
    return manifest


def _card(m: dict, configs: list[str], license: str) -> str:
    """README.md: YAML front matter (licence, tags, the parquet configs load_dataset reads) and what was traced."""
    front = {"license": license, "tags": ["tokenclock", "token-loss", "learning-dynamics", "scaling-laws"],
             "pretty_name": f"tokenclock trace ({m['n_tok']} tokens x {m['n_ckpt']} checkpoints)",
             "configs": [{"config_name": c, "data_files": f"data/{c}.parquet", **({"default": True} if i == 0 else {})}
                         for i, c in enumerate(configs)]}
    t, v = m["trace"], m.get("versions_traced") or {}
    rows = [f"| {f['path']} | {f['bytes']:,} | `{f['sha256'][:16]}…` |" for f in m["files"]]
    what = (f"{len(t['sources'])} checkpoints of {t['sources'][0].split('@')[0]}" if t.get("sources")
            else f"the {m['n_ckpt']} checkpoints of the tokenclock run {Path(m['source_run']).name}")
    how = ", ".join(f"{k} {t[k]}" for k in ("source", "text", "seq_len", "n_seqs", "dtype") if t.get(k) is not None)
    return "\n".join([
        "---", yaml.safe_dump(front, sort_keys=False).strip(), "---", "",
        "# Per-token validation loss over checkpoints", "",
        f"Traced by tokenclock: the loss of {m['n_tok']:,} contextualized validation tokens at each of {what} "
        f"({how}).", "",
        f"Axes: {', '.join(m['axes'])}; each `<axis>/losses.npz` holds `axis_values [K]`, `loss_matrix [N, K]` "
        "(nats), `axis_name`, `sample_id [N]`, `token_pos [N]` and `metadata` (the paper's format). "
        f"Tables (`datasets.load_dataset(DIR, name)`): {', '.join(configs)}.", "",
        f"Made with: `{m['command']}`", "",
        f"Software when traced: torch {v.get('torch')}, transformers {v.get('transformers')}, "
        f"tokenclock {v.get('tokenclock')}, python {v.get('python')}.", "",
        "Read back (checksums verified first): `tokenclock import DIR --out RUN`, then `tokenclock fit RUN`.", "",
        "| file | bytes | sha256 |", "|---|---|---|", *rows, ""])


# ----------------------------------------------------------------------------- import


def verify_dataset(root: str | Path) -> dict:
    """The manifest of a dataset directory after checking every file it lists (present, byte size,
    sha256); InputError naming the first file that does not match."""
    root = Path(root)
    path = root / MANIFEST
    if not path.is_file():
        raise InputError(f"{root} has no {MANIFEST}", "pass a directory written by `tokenclock export --hf-dataset`")
    try:
        m = yaml.safe_load(path.read_text())
        files, axes = m["files"], m["axes"]
    except (yaml.YAMLError, KeyError, TypeError) as e:
        raise InputError(f"{path} is not a tokenclock dataset manifest ({type(e).__name__})",
                         "re-export the run") from None
    if m.get("schema") != SCHEMA:
        raise InputError(f"{path} has schema {m.get('schema')!r}, this tokenclock reads {SCHEMA}")
    for f in files:
        p = root / f["path"]
        if not p.is_file():
            raise InputError(f"{root}: the manifest names {f['path']}, which is missing",
                             "download the whole dataset again")
        size = p.stat().st_size
        if size != f["bytes"] or file_sha256(p) != f["sha256"]:
            raise InputError(f"{root}: {f['path']} does not match its checksum in {MANIFEST} "
                             f"({size} bytes, manifest says {f['bytes']})", "download that file again")
    listed = {f.get("axis") for f in files if f.get("kind") == "losses"}
    for a in axes:
        if a not in listed:
            raise InputError(f"{path} lists axis {a!r} but no {AXIS_NPZ.format(axis=a)}", "re-export the run")
    return m


def import_dataset(root: str | Path, out_dir: str | Path, axis: str | None = None) -> dict:
    """Verify DIR, then write its `<axis>/losses.npz` (default: the first axis) as OUT's trace, so
    that `tokenclock fit OUT` works; returns {"axis", "n_tok", "n_ckpt", "out"}."""
    m = verify_dataset(root)
    axis = axis or m["axes"][0]
    if axis not in m["axes"]:
        raise InputError(f"{root} has no axis {axis!r} (it has: {', '.join(m['axes'])})", "pass --axis with one of those")
    name = import_npz(Path(root) / AXIS_NPZ.format(axis=axis), out_dir)
    meta = read_json(RunDir(out_dir).trace_meta)
    return {"axis": name, "n_tok": meta["n_tok"], "n_ckpt": meta["n_ckpt"], "out": str(out_dir)}
