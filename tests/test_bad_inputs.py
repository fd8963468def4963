"""The bad-input table (docs/bad_inputs.md): each case gives one line on stderr naming the problem
and the fix, the documented exit code, no traceback, and leaves earlier artifacts intact."""
from __future__ import annotations

import atexit
import errno
import functools
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest

from tokenclock.artifacts import write_json, write_npy, write_parquet
from tokenclock.cli import main
from tokenclock.rundir import RunDir


def _text_dir(tmp: Path, n: int = 3) -> Path:
    d = tmp / "texts"
    d.mkdir(exist_ok=True)
    for i in range(n):
        (d / f"d{i}.txt").write_text(f"Document {i}. " + "The quick brown fox jumps over the lazy dog. " * 20)
    return d


def _npz(tmp: Path, **arrays) -> str:
    path = tmp / "in.npz"
    np.savez(path, **arrays)
    return str(path)


X = np.array([1.0, 2, 4, 8, 16, 32])
GOOD = np.linspace(8, 3, 6)[None, :] + np.zeros((20, 1))


def _traced_run(tmp: Path) -> Path:
    """A run directory holding only a small trace (as imported from an npz)."""
    run = RunDir(tmp / "run")
    write_npy(run.trace_loss, GOOD.T.astype(np.float32).copy())
    write_parquet(run.trace_axis, {"step": X})
    write_parquet(run.trace_tokens, {"tok_idx": np.arange(20)})
    write_json(run.trace_meta, {"n_tok": 20, "n_ckpt": 6, "axes": ["step"], "source": "npz"})
    return run.root


def case_config_typo(tmp):
    return ["train", "--config", "tiny", "--out", str(tmp / "r"), "--set", "train.lr_peek=1"], 3, "did you mean 'train.lr_peak'"


def case_unknown_preset(tmp):
    return ["train", "--config", "tiny", "--out", str(tmp / "r"), "--set", "model.preset=llama-7x"], 3, "unknown model preset"


def case_unknown_section(tmp):
    return ["train", "--config", "tiny", "--out", str(tmp / "r"), "--set", "trian.steps=3"], 3, "unknown config section"


def case_missing_config_file(tmp):
    return ["train", "--config", str(tmp / "nope.yaml"), "--out", str(tmp / "r")], 3, "not found"


def case_bad_value(tmp):
    return ["train", "--config", "tiny", "--out", str(tmp / "r"), "--set", "train.steps=lots"], 3, "expected an integer"


def case_invalid_yaml(tmp):
    (tmp / "bad.yaml").write_text("train: [unclosed\n")
    return ["train", "--config", str(tmp / "bad.yaml"), "--out", str(tmp / "r")], 3, "not valid YAML"


def case_missing_source(tmp):
    return ["corpus", "--source", str(tmp / "missing.txt"), "--out", str(tmp / "r")], 4, "missing.txt"


def case_unknown_synthetic(tmp):
    return ["corpus", "--synthetic", "fakts", "--out", str(tmp / "r")], 3, \
        "unknown synthetic corpus 'fakts' (did you mean 'facts'? the synthetic corpora are: facts)"


def case_empty_file(tmp):
    (tmp / "empty.txt").write_text("")
    return ["corpus", "--source", str(tmp / "empty.txt"), "--out", str(tmp / "r")], 4, "empty"


def case_undecodable(tmp):
    d = _text_dir(tmp)
    (d / "latin1.txt").write_bytes("caf\xe9 ".encode("latin-1") * 50)
    return ["corpus", "--source", str(d), "--out", str(tmp / "r")], 4, "latin1.txt"


def case_bad_jsonl(tmp):
    (tmp / "docs.jsonl").write_text('{"text": "fine document here"}\n{not json}\n')
    return ["corpus", "--source", str(tmp / "docs.jsonl"), "--out", str(tmp / "r")], 4, "docs.jsonl:2"


def case_parquet_without_text(tmp):
    write_parquet(tmp / "docs.parquet", {"body": np.array(["a", "b"], dtype=object)})
    return ["corpus", "--source", str(tmp / "docs.parquet"), "--out", str(tmp / "r")], 4, "text"


def case_one_document(tmp):
    (tmp / "one.txt").write_text("Just one document. " * 50)
    return ["corpus", "--source", str(tmp / "one.txt"), "--out", str(tmp / "r")], 5, "at least 2"


def case_npz_missing_key(tmp):
    return ["fit", "--npz", _npz(tmp, axis_values=X), "--out", str(tmp / "o")], 4, "no 'loss_matrix'"


def case_npz_not_a_zip(tmp):
    (tmp / "junk.npz").write_bytes(b"this is not an npz")
    return ["fit", "--npz", str(tmp / "junk.npz"), "--out", str(tmp / "o")], 4, "not a readable .npz"


def case_npz_shape_mismatch(tmp):
    return ["fit", "--npz", _npz(tmp, axis_values=X, loss_matrix=GOOD.T), "--out", str(tmp / "o")], 7, "shape"


def case_nan_losses(tmp):
    bad = GOOD.copy()
    bad[3, 2] = np.nan
    return ["fit", "--npz", _npz(tmp, axis_values=X, loss_matrix=bad), "--out", str(tmp / "o")], 7, "NaN/inf"


def case_axis_not_increasing(tmp):
    return ["fit", "--npz", _npz(tmp, axis_values=X[::-1].copy(), loss_matrix=GOOD), "--out", str(tmp / "o")], 7, "strictly increasing"


def case_axis_not_positive(tmp):
    return ["fit", "--npz", _npz(tmp, axis_values=X - 1, loss_matrix=GOOD), "--out", str(tmp / "o")], 7, "> 0"


def case_too_few_checkpoints(tmp):
    return ["fit", "--npz", _npz(tmp, axis_values=X[:3], loss_matrix=GOOD[:, :3]), "--out", str(tmp / "o")], 7, "at least 4"


def case_trace_without_checkpoints(tmp):
    (tmp / "r").mkdir()
    return ["trace", str(tmp / "r")], 6, "no checkpoints"


def case_fit_loss_floor_nan(tmp):
    return ["fit", str(_traced_run(tmp)), "--set", "fit.loss_floor=nan"], 3, "fit.loss_floor must be a finite number or null"


def case_fit_max_events(tmp):
    return ["fit", str(_traced_run(tmp)), "--set", "fit.max_events=4"], 3, "fit.max_events must be 0, 1, 2 or 3"


def case_study_synthetic_corpus_too_small(tmp):
    sets = ["corpus.max_chars=300000", "tokens.vocab_size=2048", "trace.n_seqs=16", "corpus.val_fraction=0.1"]
    return (["study", "study-synthetic", "--out", str(tmp / "s"), "--quiet", *_sets(sets)], 7,
            "epochs of it")


def case_fit_without_trace(tmp):
    (tmp / "r").mkdir()
    return ["fit", str(tmp / "r")], 6, "tokenclock trace"


def case_spectrum_without_fit(tmp):
    return ["spectrum", str(_traced_run(tmp))], 6, "tokenclock fit"


def case_report_without_trace(tmp):
    (tmp / "r").mkdir()
    return ["report", str(tmp / "r")], 6, "tokenclock trace"


def case_locked_run(tmp):
    run = _traced_run(tmp)
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    import socket

    (run / ".lock").write_text(json.dumps({"pid": holder.pid, "host": socket.gethostname(), "stage": "fit"}))
    tmp.joinpath("holder.pid").write_text(str(holder.pid))
    return ["fit", str(run)], 6, f"in use by pid {holder.pid}"


def case_corrupt_manifest(tmp):
    run = _traced_run(tmp)
    (run / "manifest.json").write_text("{ half written")
    return ["fit", str(run)], 6, "not valid JSON"


def case_missing_tokenizer(tmp):
    d = _text_dir(tmp)
    return ["tokenize", "--out", str(tmp / "r"), "--set", f"corpus.sources=[{d}]", "--set", "corpus.val_fraction=0.4",
            "--set", f"tokens.tokenizer={tmp / 'nowhere'}"], 9, "no tokenizer.json"


def case_vocab_too_large(tmp):
    d = _text_dir(tmp)
    return ["tokenize", "--out", str(tmp / "r"), "--set", f"corpus.sources=[{d}]", "--set", "corpus.val_fraction=0.4",
            "--set", "tokens.vocab_size=60000"], 5, "supports only"


def case_export_unknown_axis(tmp):
    return ["export", str(_traced_run(tmp)), "--npz", str(tmp / "x.npz"), "--axis", "cum_lr"], 4, "no axis 'cum_lr'"


def case_explore_not_a_run(tmp):
    (tmp / "r").mkdir()
    return ["explore", str(tmp / "r"), "--no-browser"], 6, "is not a tokenclock run"


def case_explore_without_trace(tmp):
    (tmp / "r" / "tokens").mkdir(parents=True)
    return ["explore", str(tmp / "r"), "--no-browser"], 6, f"has no trace to explore (it has: tokens/) (run `tokenclock trace {tmp / 'r'}`"


def case_explore_port_in_use(tmp):
    holder = subprocess.Popen([sys.executable, "-c", "import socket, time; s = socket.socket(); "
                               "s.bind(('127.0.0.1', 0)); s.listen(); print(s.getsockname()[1], flush=True); "
                               "time.sleep(60)"], stdout=subprocess.PIPE, text=True)
    tmp.joinpath("holder.pid").write_text(str(holder.pid))
    port = holder.stdout.readline().strip()
    return (["explore", str(_traced_run(tmp)), "--port", port, "--no-browser"], 11,
            f"port {port} on 127.0.0.1 is in use")


@functools.lru_cache(maxsize=None)
def _zoom_source() -> tuple[Path, tuple[str, ...]]:
    """A tiny trained run (40 steps, optimizer state kept at step 5) and its --set overrides,
    trained once per session; the zoom cases copy it."""
    from conftest import tiny_overrides
    from tokenclock.testing import write_sample_texts

    root = Path(tempfile.mkdtemp(prefix="tokenclock-zoom-cases-"))
    atexit.register(shutil.rmtree, root, True)
    texts = write_sample_texts(root / "texts")
    sets = tuple(tiny_overrides(texts, **{"train.steps": 40, "train.ckpt_per_decade": 4,
                                          "train.keep_state_steps": "[5]"}))
    assert main(["train", "--config", "tiny", "--out", str(root / "run"), "--quiet", *_sets(sets)]) == 0
    return root / "run", sets


def _sets(sets) -> list[str]:
    return sum((["--set", s] for s in sets), [])


def _zoom_case(tmp: Path, *extra: str, data_order="keep") -> list[str]:
    """`tokenclock train ... --zoom 6:30` on a copy of the trained run (its recorded data order
    version removed or replaced when `data_order` says so)."""
    src, sets = _zoom_source()
    run = RunDir(tmp / "run")
    shutil.copytree(src, run.root)
    if data_order != "keep":
        m = json.loads(run.manifest.read_text())
        m["stages"]["train"].pop("data_order_version")
        if data_order is not None:
            m["stages"]["train"]["data_order_version"] = data_order
        write_json(run.manifest, m)
    return ["train", "--config", "tiny", "--out", str(run.root), "--quiet", *_sets(sets), *extra, "--zoom", "6:30"]


def case_zoom_reversed(tmp):
    return ["train", "--config", "tiny", "--out", str(tmp / "r"), "--zoom", "50:20"], 3, "is reversed"


def case_zoom_outside_run(tmp):
    return ["train", "--config", "tiny", "--out", str(tmp / "r"), "--zoom", "10:5000"], 3, "outside the run (steps 0..200)"


def case_zoom_not_an_interval(tmp):
    return ["train", "--config", "tiny", "--out", str(tmp / "r"), "--zoom", "16-256"], 3, "is not A:B"


def case_zoom_config_changed(tmp):
    return _zoom_case(tmp, "--set", "train.lr_peak=0.001"), 6, "holds a different run (train.lr_peak: 0.004 -> 0.001)"


def case_zoom_unversioned_run(tmp):
    return _zoom_case(tmp, data_order=None), 6, "did not record its data order"


def case_zoom_other_data_order(tmp):
    return _zoom_case(tmp, data_order=0), 6, "trained with data order 0; this tokenclock replays data order 1"


def case_zoom_without_kept_state(tmp):
    """A branch (train.init_from) that kept no state of its own, whose source run is gone."""
    from tokenclock.config import load_config
    from tokenclock.pipeline import train

    src, sets = _zoom_source()
    shutil.copytree(src, tmp / "source")
    branch = list(sets) + ["train.keep_state_steps=[]", f"train.init_from={RunDir(tmp / 'source').ckpt(5)}"]
    train(tmp / "branch", load_config("tiny", branch), progress=False)
    shutil.rmtree(tmp / "source")
    argv = ["train", "--config", "tiny", "--out", str(tmp / "branch"), "--quiet", *_sets(branch), "--zoom", "6:30"]
    return argv, 6, "kept no training state at or before step 6 (steps with one: none; its start"


def _study_case(tmp, setting: str) -> list[str]:
    return ["study", "study-tiny", "--out", str(tmp / "s"), "--set", setting]


def case_study_budgets_not_increasing(tmp):
    return _study_case(tmp, "study.budgets_steps=[24,96,48,192]"), 3, "study.budgets_steps must increase: 48 follows 96"


def case_study_budget_below_warmup(tmp):
    return (_study_case(tmp, "study.budgets_steps=[4,8,16,32]"), 3,
            "the smallest study budget (4 steps) is shorter than train.warmup_steps (8)")


def case_study_avg_without_ema(tmp):
    return (_study_case(tmp, "study.weights=[raw,avg]"), 3,
            "study.weights lists avg but the base config trains without averaged weights")


def case_study_unknown_fit_rule(tmp):
    return (_study_case(tmp, "study.axis_fit_rules=[two_events,three]"), 3,
            "study.axis_fit_rules: unknown or repeated rule")


def _schedule_case(tmp: Path, steps: int, batch: int, seq_len: int, sha: str | None = None) -> list[str]:
    """`tokenclock train` (the zoom source's config) with a schedule folder whose meta.json says it
    was built for (steps, batch, seq_len) and, when given, a tokenizer of sha256 `sha`."""
    _, sets = _zoom_source()
    sched = tmp / "sched"
    write_npy(sched / "offsets.npy", np.zeros((steps, batch), dtype=np.int64))
    write_json(sched / "meta.json", {"steps": steps, "batch_size": batch, "seq_len": seq_len,
                                     "reference": "runs/proxy", "tokenizer_sha256": sha})
    return ["train", "--config", "tiny", "--out", str(tmp / "r"), "--quiet", *_sets(sets),
            "--set", f"train.data_schedule={sched}"]


def case_schedule_other_run_shape(tmp):
    return (_schedule_case(tmp, 40, 8, 128), 3,
            "was built for 40 steps x 8 x 128 tokens (steps, batch_size, seq_len); this run trains 40 x 8 x 64")


def case_schedule_other_tokenizer(tmp):
    return _schedule_case(tmp, 40, 8, 64, sha="ab" * 32), 9, "was built on the tokenizer of runs/proxy (sha256 abababababab)"


def case_reshape_pool_larger_than_split(tmp):
    src, _ = _zoom_source()
    shutil.copytree(src, tmp / "ref")
    return (["reshape", str(tmp / "ref"), "--out", str(tmp / "s"), "--pool-size", "10000000", "--quiet"], 3,
            "reshape pool_size 10000000 is larger than the")


CASES = {name[5:]: fn for name, fn in sorted(globals().items()) if name.startswith("case_")}


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_input(name, tmp_path, capsys):
    argv, code, needle = CASES[name](tmp_path)
    try:
        got = main(argv)
    finally:
        pid = tmp_path / "holder.pid"
        if pid.is_file():
            os.kill(int(pid.read_text()), 9)
    err = capsys.readouterr().err
    assert got == code, (name, got, err)
    assert needle in err, (name, err)
    errors = [line for line in err.splitlines() if line.startswith("tokenclock: error: ")]
    assert len(errors) == 1 and err.rstrip().endswith(errors[0]), err  # one line, last
    assert "Traceback" not in err
    assert not list(tmp_path.rglob("*.tmp[0-9]*")), "temporary files left behind"


def test_table_documents_every_case():
    doc = (Path(__file__).parents[1] / "docs" / "bad_inputs.md").read_text()
    for name in CASES:
        assert f"`{name}`" in doc, f"docs/bad_inputs.md lacks the case {name}"
    assert len(CASES) >= 20


def test_disk_full_keeps_earlier_artifacts(tmp_path, monkeypatch, capsys):
    """ENOSPC while writing the fit: one line, exit 10, the trace intact, no partial fit files."""
    run = _traced_run(tmp_path)
    before = (run / "trace" / "loss.npy").read_bytes()
    import pyarrow.parquet as pq

    def full(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device", str(a[1]) if len(a) > 1 else None)

    monkeypatch.setattr(pq, "write_table", full)
    code = main(["fit", str(run), "--quiet"])
    err = capsys.readouterr().err
    assert code == 10 and "disk full" in err and err.count("\n") == 1
    assert (run / "trace" / "loss.npy").read_bytes() == before
    assert not (run / "fit" / "events.parquet").exists()
    assert not list(run.rglob("*.tmp[0-9]*"))


def test_stale_lock_is_taken_over(tmp_path):
    import socket

    run = _traced_run(tmp_path)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (run / ".lock").write_text(json.dumps({"pid": dead.pid, "host": socket.gethostname(), "stage": "fit"}))
    assert main(["fit", str(run), "--quiet"]) == 0
    assert not (run / ".lock").exists()
