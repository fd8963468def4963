"""A trace shared as a Hugging Face dataset: export the session's tiny run, read it with
`datasets.load_dataset` (no hub access), import it (checksums first) and fit it: the same events as
the run's own fit. Tampered files, a manifest naming a missing axis, an existing target refused."""
from __future__ import annotations

import dataclasses
import os
import shutil

import numpy as np
import pytest
import yaml

from conftest import tiny_overrides
from tokenclock.artifacts import read_parquet
from tokenclock.cli import main
from tokenclock.config import load_config
from tokenclock.errors import InputError
from tokenclock.export import export_dataset, import_dataset, verify_dataset
from tokenclock.rundir import RunDir
from tokenclock.stages.fit.stage import fit


@pytest.fixture(scope="module")
def dataset(tiny_run, tmp_path_factory):
    out = tmp_path_factory.mktemp("hf") / "tiny-trace"
    assert main(["export", str(tiny_run), "--hf-dataset", str(out)]) == 0
    return out


def test_layout_manifest_and_card(dataset, tiny_run):
    m = yaml.safe_load((dataset / "manifest.yaml").read_text())
    assert m["axes"][0] == "step" and "tokens_seen" in m["axes"]
    paths = [f["path"] for f in m["files"]]
    assert "step/losses.npz" in paths and "data/tokens.parquet" in paths and "data/events.parquet" in paths
    loss = np.load(dataset / "step" / "losses.npz")
    assert set(loss.files) >= {"axis_values", "loss_matrix", "axis_name", "sample_id", "token_pos"}
    n_tok = read_parquet(RunDir(tiny_run).trace_tokens, columns=["tok_idx"])["tok_idx"].shape[0]
    assert loss["loss_matrix"].shape[0] == n_tok == m["n_tok"]
    entry = next(f for f in m["files"] if f["path"] == "step/losses.npz")
    assert entry["shapes"]["loss_matrix"] == list(loss["loss_matrix"].shape)
    assert entry["bytes"] == (dataset / "step" / "losses.npz").stat().st_size
    card = (dataset / "README.md").read_text()
    front = yaml.safe_load(card.split("---")[1])
    assert front["license"] == "cc-by-4.0" and "tokenclock" in front["tags"]
    assert front["configs"][0] == {"config_name": "tokens", "data_files": "data/tokens.parquet", "default": True}
    assert "transformers" in card and "tokenclock export" in card


def test_round_trip_through_datasets_gives_the_same_fit(dataset, tiny_run, texts_dir, tmp_path, monkeypatch):
    datasets = pytest.importorskip("datasets")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    tokens = datasets.load_dataset(str(dataset), cache_dir=str(tmp_path / "cache"), split="train")
    events = datasets.load_dataset(str(dataset), "events", cache_dir=str(tmp_path / "cache"), split="train")
    run_events = read_parquet(RunDir(tiny_run).fit_events)
    assert tokens.num_rows == verify_dataset(dataset)["n_tok"] and events.num_rows == len(run_events["tok_idx"])
    assert main(["import", str(dataset), "--out", str(tmp_path / "back")]) == 0
    cfg = load_config("tiny", tiny_overrides(texts_dir)).fit
    fit(tmp_path / "back", dataclasses.replace(cfg, extra_axes=[]), progress=False)
    back = read_parquet(RunDir(tmp_path / "back").fit_events)
    assert list(back) == list(run_events) and len(back["tok_idx"]) > 0
    for col in run_events:
        np.testing.assert_array_equal(back[col], run_events[col], err_msg=col)
    sets = sum((["--set", x] for x in tiny_overrides(texts_dir)), [])
    assert main(["fit", "--npz", str(dataset), "--out", str(tmp_path / "once"), "--config", "tiny", "--quiet",
                 *sets]) == 0  # verify, import and fit in one step
    once = read_parquet(RunDir(tmp_path / "once").fit_events)
    np.testing.assert_array_equal(once["mu"], run_events["mu"])


def test_tampered_and_missing_files_refused(dataset, tmp_path, capsys):
    bad = tmp_path / "bad"
    shutil.copytree(dataset, bad)
    p = bad / "step" / "losses.npz"
    data = bytearray(p.read_bytes())
    data[-40] ^= 1
    p.write_bytes(bytes(data))
    assert main(["import", str(bad), "--out", str(tmp_path / "r")]) == InputError.exit_code
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "step/losses.npz does not match its checksum" in err[0]
    assert not (tmp_path / "r").exists()  # nothing written
    shutil.copy(dataset / "step" / "losses.npz", p)
    shutil.rmtree(bad / "tokens_seen")
    with pytest.raises(InputError, match="names tokens_seen/losses.npz, which is missing"):
        import_dataset(bad, tmp_path / "r")
    shutil.copytree(dataset / "tokens_seen", bad / "tokens_seen")
    with pytest.raises(InputError, match="no axis 'n_params'.*step"):
        import_dataset(bad, tmp_path / "r", axis="n_params")
    m = yaml.safe_load((bad / "manifest.yaml").read_text())
    m["axes"].append("cum_lr_missing")
    (bad / "manifest.yaml").write_text(yaml.safe_dump(m))
    with pytest.raises(InputError, match="lists axis 'cum_lr_missing' but no cum_lr_missing/losses.npz"):
        verify_dataset(bad)


def test_export_refuses_a_non_empty_target(tiny_run, tmp_path):
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "keep.txt").write_text("mine")
    with pytest.raises(InputError, match="already exists"):
        export_dataset(tiny_run, tmp_path / "x")
    assert os.listdir(tmp_path / "x") == ["keep.txt"]
    assert main(["export", str(tiny_run)]) == 3  # neither --npz nor --hf-dataset
