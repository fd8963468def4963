"""`tokenclock explore` as a user runs it: the console script in a subprocess prints the URL and
what each run lacks, answers on 127.0.0.1, and stops on Ctrl-C with exit 0 and no traceback; opening
a directory that is not a run says what it is instead."""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import urllib.request

import pytest
from explore_runs import *  # noqa: F403 (the fixtures: explore_dirs, opened, snapshot)

from tokenclock.errors import RunDirError
from tokenclock.explore.data import check_run_dir


def test_console_script_serves_and_stops_on_ctrl_c(explore_dirs):
    cmd = [sys.executable, "-m", "tokenclock", "explore", str(explore_dirs["tiny"]), str(explore_dirs["trace_only"]),
           str(explore_dirs["short"]), "--port", "0", "--no-browser"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines = []
    try:
        t0 = time.time()
        while time.time() - t0 < 120:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            if "tokenclock explore:" in line:
                break
        url = lines[-1].split(" at ")[1].split()[0]
        assert url.startswith("http://127.0.0.1:")
        with urllib.request.urlopen(url + "api/runs", timeout=30) as r:
            assert [x["name"] for x in json.load(r)] == ["tiny", "trace_only", "short"]
    finally:
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    text = "".join(lines) + out
    assert proc.returncode == 0, err
    assert "Traceback" not in err
    assert "trace_only: no fit/" in text and "tokenclock fit" in text
    assert "do not share their validation tokens" in text and "the compare view refuses them" in text


@pytest.mark.parametrize("setup, needle", [
    (lambda p: None, "does not exist"),
    (lambda p: p.write_text("x"), "is not a directory"),
    (lambda p: (p.mkdir(), (p / "study.json").write_text("{}"), (p / "axes" / "D_a").mkdir(parents=True)),
     "is a study directory, not a run"),
    (lambda p: (p.mkdir(), (p / "ckpt" / "step_0000001").mkdir(parents=True)),
     "has no trace to explore (it has: ckpt/ (1 checkpoints))"),
    (lambda p: (p.mkdir(), (p / "losses.npz").write_bytes(b"")), "tokenclock fit --npz"),
])
def test_what_is_not_a_run(tmp_path, setup, needle):
    p = tmp_path / "x"
    setup(p)
    with pytest.raises(RunDirError) as e:
        check_run_dir(p)
    assert needle in str(e.value)
