"""The CLI as a user runs it: one-line errors with distinct exit codes, and the console script."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np

from tokenclock.cli import main


def test_help_subprocess():
    out = subprocess.run([sys.executable, "-m", "tokenclock", "--help"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and "trace" in out.stdout and "spectrum" in out.stdout


def test_presets(capsys):
    assert main(["presets"]) == 0
    out = capsys.readouterr().out
    assert "llama-100k" in out and "llama-1b" in out and "demo" in out


def test_every_shipped_preset_loads():
    """Each preset in src/tokenclock/presets is a valid run or study config (GPU ones included)."""
    from tokenclock.config import load_config
    from tokenclock.study.config import load_study
    from tokenclock.study.plan import plan

    folder = Path(__file__).parents[1] / "src" / "tokenclock" / "presets"
    names = sorted(p.stem for p in folder.glob("*.yaml"))
    assert {"tiny", "demo", "gpu", "study-tiny", "study-cpu", "study-gpu"} <= set(names)
    for name in names:
        if name.startswith("study"):
            assert plan(load_study(name)), name
        else:
            cfg = load_config(name)
            assert cfg.train.warmup_steps < cfg.train.steps and len(cfg.train.ckpt_steps()) >= 8, name


def test_config_typo_one_line(capsys, tmp_path):
    code = main(["train", "--config", "tiny", "--out", str(tmp_path / "r"), "--set", "train.lr_peek=1"])
    err = capsys.readouterr().err
    assert code == 3 and err.count("\n") == 1 and "did you mean 'train.lr_peak'" in err
    assert not (tmp_path / "r").exists()


def test_trace_without_checkpoints(capsys, tmp_path):
    (tmp_path / "r").mkdir()
    code = main(["trace", str(tmp_path / "r")])
    err = capsys.readouterr().err
    assert code == 6 and "holds no checkpoints" in err and "Traceback" not in err


def test_fit_without_trace(capsys, tmp_path):
    code = main(["fit", str(tmp_path)])
    assert code != 0 and "tokenclock trace" in capsys.readouterr().err


def _npz(path, **arrays):
    np.savez(path, **arrays)
    return str(path)


def test_bad_npz_inputs(capsys, tmp_path):
    x = np.array([1.0, 2, 4, 8, 16])
    good = np.random.default_rng(0).random((10, 5))
    cases = {
        "no 'loss_matrix'": dict(axis_values=x),
        "shape": dict(axis_values=x, loss_matrix=good.T),
        "NaN/inf": dict(axis_values=x, loss_matrix=np.where(good > 0.9, np.nan, good)),
        "strictly increasing": dict(axis_values=x[::-1].copy(), loss_matrix=good),
        "> 0": dict(axis_values=np.array([0.0, 1, 2, 3, 4]), loss_matrix=good),
        "at least 4": dict(axis_values=x[:3], loss_matrix=good[:, :3]),
    }
    for i, (msg, arrays) in enumerate(cases.items()):
        path = _npz(tmp_path / f"bad{i}.npz", **arrays)
        out = tmp_path / f"out{i}"
        code = main(["fit", "--npz", path, "--out", str(out)])
        err = capsys.readouterr().err
        assert code in (4, 7) and msg in err, (msg, err)
        assert not (out / "trace" / "loss.npy").exists()
    code = main(["fit", "--npz", str(tmp_path / "missing.npz"), "--out", str(tmp_path / "o")])
    assert code == 4 and "does not exist" in capsys.readouterr().err


def test_python_api_names_are_the_stage_functions():
    """tc.fit, tc.trace, ... stay functions even after the stage packages are imported (the stage
    code lives in tokenclock.stages.<stage>, so no module shares a name with an API function)."""
    import importlib
    import types

    import tokenclock as tc

    for name in ("train", "trace", "fit", "spectrum", "report", "demo"):
        if name != "demo":
            importlib.import_module(f"tokenclock.stages.{name}")
        assert callable(getattr(tc, name)), name
        assert not isinstance(getattr(tc, name), types.ModuleType), name
