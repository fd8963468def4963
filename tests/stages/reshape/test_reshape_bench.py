"""benchmarks/reshape_bench.py: the protocol's arithmetic (steps to L*, spreads, "no gain" within
two seed SDs) and a --quick run that writes results.json and the report, redrawn by --report-only."""
from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tokenclock.testing import load_script


def _benchmark():
    return load_script(Path(__file__).parents[3] / "benchmarks" / "reshape_bench.py")


def test_protocol_arithmetic():
    bench = _benchmark()
    steps, val = np.array([0, 10, 100, 1000]), np.array([9.0, 5.0, 4.0, 3.0])
    assert bench.steps_to_reach(steps, val, 3.0) == pytest.approx(1000)
    assert bench.steps_to_reach(steps, val, 4.5) == pytest.approx(math.sqrt(10 * 100))  # halfway in ln(step)
    assert math.isnan(bench.steps_to_reach(steps, val, 2.0))
    assert bench.verdict(bench.spread([0.12, 0.11, 0.13])) == "gain"
    assert bench.verdict(bench.spread([0.12, -0.02, 0.05])) == "no gain"  # inside two seed SDs
    assert bench.verdict(bench.spread([0.12, 0.11, float("nan")])) == "no gain"  # a seed never reached L*
    assert bench.verdict(bench.spread([-0.12, -0.11, -0.13])) == "loss"


def test_quick_run_writes_results_and_report(tmp_path, capsys):
    bench = _benchmark()
    out = tmp_path / "bench"
    assert bench.main(["--quick", "--out", str(out)]) == 0
    res = json.loads((out / "results.json").read_text())
    assert res["args"]["seeds"] == [0, 1, 2]
    assert {"uniform", "learnable-now", "token-learnable-wsd", "token-learnable-wsd+avg"} <= set(res["summary"])
    s = res["summary"]["token-learnable-wsd"]
    assert len(s["speedup"]["per_seed"]) == 3 and s["verdict"] in ("gain", "no gain", "loss")
    assert 0 <= res["proxy"]["censored_share"] <= 1 and res["proxy"]["flops"] > 0
    assert res["proxy"]["train_seconds"] > 0 and res["proxy"]["pool_fit_seconds"] >= 0
    assert set(res["checks"]["pool_repetition"]) == {"learnable-now", "token-learnable-wsd"}
    # the final checkpoints scored again on validation windows shared by every seed
    assert res["summary"]["uniform"]["final_check_delta"]["mean"] == 0
    assert math.isfinite(res["summary"]["token-learnable-wsd+avg"]["final_check_delta"]["mean"])
    printed = capsys.readouterr().out
    assert "proxy check:" in printed and "pool check" in printed and "no gain" in printed
    page = out / "report" / "index.html"
    assert page.is_file() and (out / "report" / "reshape.png").is_file() and "incl. proxy cost" in page.read_text()
    page.unlink()
    assert bench.main(["--out", str(out), "--report-only"]) == 0
    assert page.is_file()
    # two jobs (uniform arms beside the proxy, the reshaped ones after it), run as a user runs it,
    # give the same curves
    script = Path(__file__).parents[3] / "benchmarks" / "reshape_bench.py"
    subprocess.run([sys.executable, str(script), "--quick", "--jobs", "2", "--out", str(tmp_path / "two")],
                   check=True, capture_output=True)
    two = json.loads((tmp_path / "two" / "results.json").read_text())
    assert two["curves"] == res["curves"] and two["summary"] == res["summary"]
