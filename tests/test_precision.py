"""dtype auto: bf16 only where the CPU computes it natively (by capability, not timing); the choice
recorded with the machine; a resumed run keeps its recorded dtype; bf16 forced on a CPU that
emulates it warns with the measured slowdown."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from conftest import tiny_overrides
from tokenclock import precision
from tokenclock.artifacts import read_json, write_json
from tokenclock.config import load_config
from tokenclock.errors import ConfigError
from tokenclock.rundir import RunDir

# torch's AVX2 kernels only: how a CPU without AMX or AVX512-BF16 computes (bf16 emulated)
AVX2_ENV = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_ENABLE_INSTRUCTIONS": "AVX2"}


def test_explicit_and_auto_choice():
    assert precision.choose("fp32", "cpu") == precision.Precision("fp32", "fp32 as configured")
    auto = precision.choose("auto", "cpu")
    m = precision.machine()
    if precision.native_bf16_cpu():  # by capability, never by timing: the same choice at any load
        assert (m["amx"] or m["avx512_bf16"]) and "AVX512" in m["capability"]
        assert auto.dtype == "bf16" and "auto: native bf16" in auto.reason
    else:
        assert auto.dtype == "fp32" and "no native bf16" in auto.reason
    assert precision.choose("auto", "cpu") == auto
    assert not auto.emulated
    rec = auto.record()
    assert rec["cpu"] == precision.cpu_model() and rec["capability"] and rec["cores"] >= 1
    with pytest.raises(ConfigError, match="unknown dtype"):
        precision.choose("fp16", "cpu")


@pytest.mark.parametrize("env", [AVX2_ENV, {"ONEDNN_MAX_CPU_ISA": "AVX2"}], ids=["avx2-kernels", "onednn-cap"])
def test_avx2_kernels_choose_fp32_and_warn_on_forced_bf16(env):
    """In a process held to torch's AVX2 kernels (or with oneDNN alone capped below bf16), auto is
    fp32 and a forced bf16 says how much slower it runs."""
    code = ("from tokenclock import precision as p\n"
            "a, b = p.choose('auto', 'cpu'), p.choose('bf16', 'cpu')\n"
            "p.say('train.dtype', b)\n"
            "print(a.dtype, b.dtype, b.emulated, 1 / p.cpu_bf16_speedup())\n")
    out = subprocess.run([sys.executable, "-c", code], env={**os.environ, **env},
                         capture_output=True, text=True, timeout=120, check=True).stdout.splitlines()
    assert out[0].startswith("tokenclock: warning: train.dtype bf16: bf16 as configured, but this CPU has "
                             "no native bf16") and "the time of an fp32 one" in out[0]
    dtype_auto, dtype_forced, emulated, slowdown = out[1].split()
    assert (dtype_auto, dtype_forced, emulated) == ("fp32", "bf16", "True")
    # the factor itself is a timing (55-80x on an idle AMD EPYC, less on a loaded one): printed, not asserted
    assert float(slowdown) > 0


def test_train_records_precision_and_resume_keeps_it(tmp_path, texts_dir, capsys):
    """The train summary and the manifest record the dtype, its reason and the machine; a run
    whose manifest records another dtype than auto would choose here keeps the recorded one."""
    from tokenclock.pipeline import train

    cfg = load_config("tiny", tiny_overrides(texts_dir, **{"train.steps": 6, "train.warmup_steps": 2}))
    summary = train(tmp_path / "r", cfg, progress=False)
    now = precision.choose("auto", "cpu")
    assert summary["dtype"] == now.dtype and summary["precision"]["reason"] == now.reason
    assert summary["precision"]["capability"] == precision.machine()["capability"]
    run = RunDir(tmp_path / "r")
    m = read_json(run.manifest)
    assert m["stages"]["train"]["precision"]["dtype"] == now.dtype
    # as if this run had trained on a machine where auto chose the other dtype, and was cut short
    other = "fp32" if now.dtype == "bf16" else "bf16"
    m["stages"]["train"].update(status="running", precision={"dtype": other})
    write_json(run.manifest, m)
    capsys.readouterr()
    resumed = train(tmp_path / "r", cfg, progress=False)
    assert resumed["dtype"] == other and resumed["resumed_from"] == 6
    assert f"kept from this run's manifest (it trained in {other})" in capsys.readouterr().out
    assert json.loads(run.manifest.read_text())["stages"]["train"]["precision"]["dtype"] == other
