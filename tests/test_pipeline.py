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
