"""Crash safety, on purpose: kill each stage with SIGKILL at random points, resume, and check that
the final artifacts equal those of an uninterrupted run.

    python scripts/crashtest.py [--trials 10] [--stages train,trace,fit,study] [--seed 0]

Uses the tiny preset on Python's own documentation text (offline). Prints one line per trial and
a summary; exits non-zero if any resumed run differs from the reference.
"""
from __future__ import annotations

import argparse
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def sets(text_dir: Path) -> list[str]:
    pairs = [f"corpus.sources=[{text_dir}]", "corpus.max_chars=null", "corpus.val_fraction=0.1",
             "tokens.vocab_size=512", "trace.n_seqs=48", "train.steps=120", "train.threads=1"]
    return sum((["--set", p] for p in pairs), [])


def command(stage: str, run: Path, text_dir: Path) -> list[str]:
    base = [sys.executable, "-m", "tokenclock"]
    if stage == "train":
        return base + ["train", "--config", "tiny", "--out", str(run), "--quiet", *sets(text_dir)]
    if stage == "trace":
        return base + ["trace", str(run), "--config", "tiny", "--quiet", *sets(text_dir)]
    if stage == "fit":
        return base + ["fit", str(run), "--config", "tiny", "--quiet", *sets(text_dir)]
    if stage == "study":
        study_sets = [f"corpus.sources=[{text_dir}]", "corpus.max_chars=null", "corpus.val_fraction=0.1",
                      "train.threads=1", "trace.n_seqs=16", "study.budgets_steps=[16,32,64,128]",
                      "study.bootstrap=10"]
        return base + ["study", "study-tiny", "--out", str(run), "--quiet",
                       *sum((["--set", p] for p in study_sets), [])]
    raise ValueError(stage)


def artifacts(stage: str, run: Path) -> dict[str, bytes | np.ndarray]:
    """What must be identical after a resume."""
    from tokenclock.artifacts import read_parquet
    from tokenclock.rundir import RunDir

    r = RunDir(run)
    if stage == "train":
        last = r.ckpt_steps()[-1]
        from safetensors.numpy import load_file

        out = {f"w:{k}": v for k, v in load_file(str(r.ckpt(last) / "model.safetensors")).items()}
        idx = read_parquet(r.ckpt_index)
        out.update({"steps": np.asarray(idx["step"]), "val_loss": np.asarray(idx["val_loss"])})
        return out
    if stage == "trace":
        return {"loss": np.load(r.trace_loss)}
    if stage == "fit":
        ev, tk = read_parquet(r.fit_events), read_parquet(r.fit_tokens)
        return {f"ev:{k}": np.asarray(v) for k, v in ev.items() if k != "class"} | \
               {f"tk:{k}": np.asarray(v) for k, v in tk.items() if tk[k].dtype != object} | \
               {"class": np.asarray(tk["class"]).astype(str)}
    if stage == "study":
        out = {}
        for p in sorted((run / "finals").glob("*.npy")):
            out[p.name] = np.load(p)
        for p in sorted((run / "axes").glob("*/trace/loss.npy")):
            out[str(p.relative_to(run))] = np.load(p)
        return out
    raise ValueError(stage)


def same(a: dict, b: dict) -> str | None:
    if a.keys() != b.keys():
        return f"different artifacts: {sorted(set(a) ^ set(b))[:5]}"
    for k in a:
        if not np.array_equal(np.asarray(a[k]), np.asarray(b[k]), equal_nan=np.asarray(a[k]).dtype.kind == "f"):
            return f"{k} differs"
    return None


def prepare(stage: str, ref: Path, dst: Path) -> None:
    """The state a stage starts from: the reference run without the stage's outputs."""
    if stage in ("train", "study"):
        return
    drop = {"trace": ("trace", "fit", "spectrum", "report"), "fit": ("fit", "spectrum", "report")}[stage]
    shutil.copytree(ref, dst, ignore=shutil.ignore_patterns(*drop))
    # the manifest still says the stage ran: that is what a crash mid-stage leaves behind too


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=10)
    ap.add_argument("--stages", default="train,trace,fit,study")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = ap.parse_args()
    rng = random.Random(args.seed)
    root = Path(tempfile.mkdtemp(prefix="tokenclock-crash-"))
    from tokenclock.testing import write_sample_texts

    text_dir = write_sample_texts(root / "texts")
    env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
    ref = root / "ref"
    failures, durations, done_ref = 0, {}, set()
    for stage in args.stages.split(","):
        target = root / "ref-study" if stage == "study" else ref
        # the reference run also needs the stages a trial starts from (e.g. --stages fit alone)
        for before in {"trace": ["train"], "fit": ["train", "trace"]}.get(stage, []):
            if before not in done_ref:
                subprocess.run(command(before, ref, text_dir), check=True, env=env, capture_output=True)
                done_ref.add(before)
        t0 = time.time()
        subprocess.run(command(stage, target, text_dir), check=True, env=env, capture_output=True)
        done_ref.add(stage)
        durations[stage] = time.time() - t0
        want = artifacts(stage, target)
        for trial in range(args.trials):
            run = root / f"{stage}-{trial}"
            prepare(stage, ref, run)
            delay = rng.uniform(0.5, max(1.0, durations[stage]))
            proc = subprocess.Popen(command(stage, run, text_dir), env=env, stdout=subprocess.DEVNULL,
                                    stderr=subprocess.DEVNULL)
            try:
                proc.wait(timeout=delay)
                killed = False
            except subprocess.TimeoutExpired:
                proc.send_signal(signal.SIGKILL)
                proc.wait()
                killed = True
            done = subprocess.run(command(stage, run, text_dir), env=env, capture_output=True, text=True)
            problem = f"resume failed: {done.stderr.strip().splitlines()[-1:]}" if done.returncode else \
                same(want, artifacts(stage, run))
            failures += problem is not None
            print(f"{stage:6s} trial {trial:2d}: kill at {delay:5.1f} s{'' if killed else ' (finished first)'}: "
                  f"{problem or 'identical after resume'}", flush=True)
            shutil.rmtree(run, ignore_errors=True)
    total = args.trials * len(args.stages.split(","))
    print(f"{total - failures}/{total} resumed runs identical to the uninterrupted reference")
    if not args.keep:
        shutil.rmtree(root, ignore_errors=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
