"""The tiny pipeline end to end, asserting on the artifacts it writes."""
from __future__ import annotations

import numpy as np

from tokenclock.artifacts import read_json, read_npy, read_parquet
from tokenclock.rundir import RunDir


def test_checkpoints_and_index(tiny_run):
    run = RunDir(tiny_run)
    steps = run.ckpt_steps()
    assert len(steps) >= 15 and steps[0] == 0 and steps[1] == 1 and steps[-1] == 200
    idx = read_parquet(run.ckpt_index)
    assert list(idx["step"]) == steps
    assert set(idx) >= {"step", "tokens_seen", "lr", "cum_lr", "train_loss", "val_loss"}
    assert np.all(np.diff(idx["cum_lr"]) > 0)
    assert idx["val_loss"][-1] < idx["val_loss"][0] - 1.0  # it learned something
    for s in steps:
        d = run.ckpt(s)
        assert (d / "model.safetensors").is_file() and (d / "config.json").is_file()
        assert (d / "tokenizer.json").is_file()
    m = read_json(run.manifest)
    for stage in ("corpus", "tokens", "train", "trace", "fit", "spectrum", "report"):
        assert m["stages"][stage]["status"] == "done", stage
    assert m["stages"]["train"]["config"]["train"]["steps"] == 200
    assert not list(run.root.rglob(".*.tmp*"))  # no temporary files left behind


def test_trace_artifacts(tiny_run):
    run = RunDir(tiny_run)
    loss = read_npy(run.trace_loss, mmap=True)
    meta = read_json(run.trace_meta)
    assert loss.dtype == np.float32 and loss.shape == (len(run.ckpt_steps()), meta["n_tok"])
    assert meta["n_tok"] == 48 * 64
    assert np.isfinite(np.asarray(loss)).all()
    # step 0 is the untrained model: every token near ln(V)
    assert abs(float(np.mean(loss[0])) - np.log(512)) < 0.3
    toks = read_parquet(run.trace_tokens)
    assert len(toks["tok_idx"]) == meta["n_tok"]
    assert set(toks) >= {"sequence", "position", "token_id", "token_text", "context", "train_count", "unigram_loss"}
    ax = read_parquet(run.trace_axis)
    assert list(ax["step"]) == run.ckpt_steps()


def test_trace_matches_transformers_forward(tiny_run):
    """Every row of the loss matrix equals a direct transformers forward pass of its checkpoint
    (checkpoints load one ahead in a thread: the rows must still be in step order)."""
    import torch
    from transformers import AutoModelForCausalLM

    run = RunDir(tiny_run)
    inputs = read_npy(run.trace_inputs).astype(np.int64)
    loss = read_npy(run.trace_loss, mmap=True)
    x = torch.from_numpy(inputs[:2])
    for k, step in enumerate(run.ckpt_steps()):
        model = AutoModelForCausalLM.from_pretrained(run.ckpt(step))
        with torch.no_grad():
            logits = model(input_ids=x[:, :-1]).logits
            ref = torch.nn.functional.cross_entropy(logits.transpose(1, 2), x[:, 1:], reduction="none")
        np.testing.assert_allclose(loss[k, : 2 * 64], ref.numpy().reshape(-1), rtol=1e-4, atol=1e-4,
                                   err_msg=f"step {step}")


def test_trace_without_prefetch_is_the_same(tiny_run, tmp_path):
    import shutil

    from tokenclock.cli import main

    run = tmp_path / "copy"
    shutil.copytree(tiny_run, run, ignore=shutil.ignore_patterns("trace", "fit", "spectrum", "report"))
    assert main(["trace", str(run), "--config", "tiny", "--quiet", "--set", "trace.n_seqs=48",
                 "--set", "trace.prefetch=false"]) == 0
    np.testing.assert_array_equal(read_npy(RunDir(run).trace_loss), read_npy(RunDir(tiny_run).trace_loss))


def test_fit_spectrum_report(tiny_run):
    run = RunDir(tiny_run)
    fs = read_json(run.fit_summary)
    assert fs["n_tok"] == 48 * 64
    ev = read_parquet(run.fit_events)
    assert set(ev) >= {"tok_idx", "a", "mu", "width"}
    assert np.all(ev["width"] > 0)
    tk = read_parquet(run.fit_tokens)
    assert set(np.unique(tk["class"])) <= {"learned", "forgotten", "rise-then-fall", "flat", "early", "late", "irregular"}
    ss = read_json(run.spectrum_summary)
    for key in ("reconstruction_r2", "reconstruction_r2_heldout", "event_share", "alpha_measured", "alpha_spectrum"):
        assert key in ss
    assert ss["reconstruction_r2"] is not None and ss["reconstruction_r2"] > 0.5
    assert "cum_lr" in ss["clocks"]
    html = run.report_html.read_text()
    assert "<img" in html and "tokenclock" in html.lower()


def test_npz_export_import_roundtrip(tiny_run, tmp_path):
    from tokenclock.cli import main
    from tokenclock.stages.trace.npz import read_losses_npz

    npz = tmp_path / "losses.npz"
    assert main(["export", str(tiny_run), "--npz", str(npz)]) == 0
    d = read_losses_npz(npz)
    loss = read_npy(RunDir(tiny_run).trace_loss, mmap=True)
    assert d["axis_name"] == "step"
    assert d["loss_matrix"].shape == (loss.shape[1], loss.shape[0] - 1)  # step 0 dropped on a log axis
    np.testing.assert_array_equal(d["loss_matrix"], np.asarray(loss[1:]).T)
    out = tmp_path / "fromnpz"
    assert main(["fit", "--npz", str(npz), "--out", str(out), "--quiet"]) == 0
    assert main(["spectrum", str(out), "--quiet"]) == 0
    a = read_json(RunDir(out).fit_summary)
    assert a["n_tok"] == loss.shape[1]
    s = read_json(RunDir(out).spectrum_summary)
    assert s["axis"] == "step" and s["reconstruction_r2"] is not None
    assert main(["fit", "--npz", str(npz), "--out", str(tmp_path / "unc"), "--quiet", "--uncertainty",
                 "--max-events", "1"]) == 0
    ev = read_parquet(RunDir(tmp_path / "unc").fit_events)
    assert "mu_se" in ev and np.nanmedian(ev["mu_se"]) > 0
    assert read_json(RunDir(tmp_path / "unc").fit_summary)["max_events"] == 1


def test_export_unknown_axis(tiny_run, tmp_path, capsys):
    from tokenclock.cli import main

    assert main(["export", str(tiny_run), "--npz", str(tmp_path / "x.npz"), "--axis", "bogus"]) != 0
    assert "no axis 'bogus'" in capsys.readouterr().err


# ----------------------------------------------------------------------------- replay zoom, then trace


def _train_argv(run, texts_dir, *extra):
    from conftest import tiny_overrides

    sets = sum((["--set", s] for s in tiny_overrides(texts_dir)), [])
    return ["train", "--config", "tiny", "--out", str(run), "--quiet", *sets, *extra]


def _counting_loader(monkeypatch, loaded: list, fail_at: int | None = None):
    """Record the step of every checkpoint the trace loads; raise KeyboardInterrupt on the
    `fail_at`-th load (a kill between rows)."""
    import tokenclock.stages.trace.stage as T

    real = getattr(T._loader, "__wrapped__", T._loader)  # not a counter set before

    def counting(path):
        inner = real(path)

        def load():
            loaded.append(int(path.name[5:]))
            if fail_at is not None and len(loaded) == fail_at:
                raise KeyboardInterrupt
            return inner()
        return load

    counting.__wrapped__ = real
    monkeypatch.setattr(T, "_loader", counting)


def test_zoom_then_trace_adds_only_the_new_rows(tiny_run, tmp_path, texts_dir, monkeypatch):
    """train -> trace (the session run) -> zoom 18:66 at 4x the density -> trace again, killed
    between rows and resumed: only the new checkpoints are scored, the old rows are kept bit for
    bit, the axis stays sorted -> fit and spectrum see the denser series."""
    import shutil

    import torch
    from transformers import AutoModelForCausalLM

    from tokenclock.cli import main
    from tokenclock.stages.train.schedule import zoom_steps

    run = RunDir(tmp_path / "run")
    shutil.copytree(tiny_run, run.root)
    old_steps, old_loss = run.ckpt_steps(), read_npy(run.trace_loss)
    assert main(_train_argv(run.root, texts_dir, "--zoom", "18:66", "--zoom-ckpt-per-decade", "40")) == 0
    new = sorted(set(run.ckpt_steps()) - set(old_steps))
    assert new == zoom_steps(old_steps, 18, 66, 40) and len(new) == 17
    zoom = read_json(run.manifest)["stages"]["train"]["zooms"][0]
    assert zoom["interval"] == [18, 66] and zoom["start_step"] == 0 and zoom["new_steps"] == new
    assert list(read_parquet(run.ckpt_index)["step"]) == run.ckpt_steps()

    trace_argv = ["trace", str(run.root), "--config", "tiny", "--quiet", "--set", "trace.n_seqs=48"]
    loaded: list[int] = []
    _counting_loader(monkeypatch, loaded, fail_at=3)
    assert main(trace_argv) == 130  # interrupted after two new rows
    np.testing.assert_array_equal(read_npy(run.trace_loss), old_loss)  # the old trace is intact
    loaded.clear()
    _counting_loader(monkeypatch, loaded)
    assert main(trace_argv) == 0
    assert loaded == new[2:]  # the two finished rows were kept
    loss = read_npy(run.trace_loss)
    steps = run.ckpt_steps()
    assert loss.shape == (len(steps), old_loss.shape[1])
    assert list(read_parquet(run.trace_axis)["step"]) == steps
    np.testing.assert_array_equal(loss[[steps.index(s) for s in old_steps]], old_loss)
    x = torch.from_numpy(read_npy(run.trace_inputs).astype(np.int64)[:2])
    for s in (new[0], new[2], new[-1]):
        model = AutoModelForCausalLM.from_pretrained(run.ckpt(s))
        with torch.no_grad():
            ref = torch.nn.functional.cross_entropy(model(input_ids=x[:, :-1]).logits.transpose(1, 2), x[:, 1:],
                                                    reduction="none")
        np.testing.assert_allclose(loss[steps.index(s), :128], ref.numpy().reshape(-1), rtol=1e-4, atol=1e-4)
    loaded.clear()
    assert main(trace_argv) == 0 and loaded == []  # nothing new: nothing scored
    assert main(["fit", str(run.root), "--config", "tiny", "--quiet"]) == 0
    assert main(["spectrum", str(run.root), "--quiet"]) == 0
    assert read_json(run.fit_summary)["n_ckpt"] == len(steps) - 1  # step 0 is off the log axis
    assert read_json(run.spectrum_summary)["n_ckpt"] == len(steps) - 1


def test_zoom_killed_and_rerun_gives_the_same_result(tiny_run, tmp_path, texts_dir):
    """kill -9 in the middle of a zoom, then the same command: the same checkpoints, weights and
    index as a zoom that ran through, and one zoom recorded."""
    import os
    import shutil
    import signal
    import subprocess
    import sys
    import time

    from safetensors.torch import load_file

    ref, killed = RunDir(tmp_path / "ref"), RunDir(tmp_path / "killed")
    for r in (ref, killed):
        shutil.copytree(tiny_run, r.root, ignore=shutil.ignore_patterns("trace", "fit", "spectrum", "report"))
    n0 = len(ref.ckpt_steps())
    env = dict(os.environ, HF_HUB_OFFLINE="1")

    def cmd(r):
        return [sys.executable, "-m", "tokenclock", *_train_argv(r.root, texts_dir, "--zoom", "18:110",
                                                                "--zoom-ckpt-per-decade", "24")]

    subprocess.run(cmd(ref), check=True, env=env, capture_output=True)
    proc = subprocess.Popen(cmd(killed), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and len(killed.ckpt_steps()) < n0 + 4 and proc.poll() is None:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert n0 < len(killed.ckpt_steps()) < len(ref.ckpt_steps()), "the kill came too late to test a rerun"
    assert "zooms" not in read_json(killed.manifest)["stages"]["train"]
    subprocess.run(cmd(killed), check=True, env=env, capture_output=True)
    assert killed.ckpt_steps() == ref.ckpt_steps() and not killed.ckpt_staging.exists()
    a, b = read_parquet(ref.ckpt_index), read_parquet(killed.ckpt_index)
    for col in ("step", "tokens_seen", "lr", "cum_lr", "train_loss", "val_loss"):
        np.testing.assert_array_equal(a[col], b[col], err_msg=col)
    for s in sorted(set(ref.ckpt_steps()) - set(RunDir(tiny_run).ckpt_steps())):
        wa, wb = (load_file(str(r.ckpt(s) / "model.safetensors")) for r in (ref, killed))
        assert all(np.array_equal(wa[k].numpy(), wb[k].numpy()) for k in wa), s
    za, zb = (read_json(r.manifest)["stages"]["train"]["zooms"] for r in (ref, killed))
    assert len(zb) == 1 and za[0]["new_steps"] == zb[0]["new_steps"]
