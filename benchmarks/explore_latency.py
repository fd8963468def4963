"""Latency and memory of `tokenclock explore` on a synthetic run of 10M tokens x 200 checkpoints.

Builds (once; reused when its sizes match) a run directory on /tmp with the files a real run has:
trace/loss.npy float32 (200, 10M) written through a memmap (8 GB), trace/axis.parquet,
trace/tokens.parquet (row groups of 2^20 rows, as pyarrow writes them for the trace stage), fit/
tokens.parquet and events.parquet (~1.7 events per token), fit/summary.json and a spectrum/. Then starts
`tokenclock explore` in a subprocess (real uvicorn) and prints the median and p95 latency of one token
click (its JSON and its trajectory bytes), a 2k-token text window (texts and colours), a spectrum
brush query, a string filter, the curves of a selection (the selection panel: a string filter's
tokens, a whole class, a brushed range's tokens), a find in the text, and the server's RSS. A
benchmark, not a test:

    python benchmarks/explore_latency.py                      # 10M x 200 in /tmp/tokenclock-explore-bench
    python benchmarks/explore_latency.py --n-tok 1000000 --requests 100
"""
from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from _common import machine_header

from tokenclock.artifacts import write_json, write_parquet
from tokenclock.curves import logistic
from tokenclock.rundir import RunDir

SEQ_LEN = 512
VOCAB = 50_000
CHUNK = 250_000
CLASSES = np.array(["learned", "rise-then-fall", "forgotten", "flat", "late", "irregular"])


def steps_of(k: int) -> np.ndarray:
    return np.round(np.geomspace(100, 1_000_000, k)).astype(np.int64)


def params(n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Per-token truth: final level b, a first event (a1, mu1, w1) and, for 70%, a second one."""
    u = np.log(steps_of(2)).astype(np.float32)
    p = {"b": rng.uniform(0.3, 4, n), "a1": rng.gamma(2.0, 1.5, n), "mu1": rng.normal(u.mean(), 1.6, n),
         "w1": rng.uniform(0.05, 0.8, n), "two": rng.random(n) < 0.7,
         "a2": rng.normal(-0.5, 1.5, n), "mu2": rng.normal(u.mean() + 1, 1.6, n), "w2": rng.uniform(0.05, 0.8, n)}
    return {k: v.astype(np.float32) if v.dtype.kind == "f" else v for k, v in p.items()}


def write_loss(run: RunDir, k: int, n: int, p: dict, rng: np.random.Generator) -> None:
    u = np.log(steps_of(k)).astype(np.float32)[:, None]  # (K, 1)
    tmp = run.trace_loss.with_suffix(".tmp.npy")
    mm = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=(k, n))
    for s in range(0, n, CHUNK):
        e = min(n, s + CHUNK)
        g = {key: v[s:e][None, :] for key, v in p.items()}
        block = g["b"] + g["a1"] * logistic((g["mu1"] - u) / g["w1"]).astype(np.float32)
        block += np.where(g["two"], g["a2"] * logistic((g["mu2"] - u) / g["w2"]), 0).astype(np.float32)
        block += rng.normal(0, 0.15, block.shape).astype(np.float32)
        mm[:, s:e] = np.maximum(block, 0.0)
    mm.flush()
    del mm
    tmp.rename(run.trace_loss)


def write_tokens(run: RunDir, n: int, rng: np.random.Generator) -> None:
    """trace/tokens.parquet in row groups of 2^20 rows (pyarrow's default for write_parquet)."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    vocab = pa.array([f" w{i}" for i in range(VOCAB)], pa.string())
    ids = (rng.zipf(1.3, n) % VOCAB).astype(np.int32)
    counts = np.bincount(ids, minlength=VOCAB).astype(np.int64) * 1000
    writer = None
    for s in range(0, n, 1 << 20):
        idx = np.arange(s, min(n, s + (1 << 20)))
        ctx = pc.binary_join_element_wise(*[vocab.take(pa.array(ids[np.maximum(idx - j, 0)])) for j in (4, 3, 2, 1)], "")
        t = pa.table({"tok_idx": idx, "sequence": (idx // SEQ_LEN).astype(np.int32),
                      "position": (idx % SEQ_LEN + 1).astype(np.int32), "token_id": ids[idx],
                      "token_text": vocab.take(pa.array(ids[idx])), "context": ctx, "train_count": counts[ids[idx]],
                      "unigram_loss": -np.log((counts[ids[idx]] + 1.0) / (counts.sum() + VOCAB))})
        writer = writer or pq.ParquetWriter(run.trace_tokens, t.schema)
        writer.write_table(t)
    writer.close()


def write_fit(run: RunDir, n: int, p: dict, rng: np.random.Generator) -> None:
    import pyarrow.parquet as pq

    two = p["two"]
    n_ev = 1 + two.astype(np.int64)
    tok = np.repeat(np.arange(n), n_ev)
    first = np.r_[0, np.cumsum(n_ev)[:-1]]
    ev = {}
    for key, (v1, v2) in {"a": ("a1", "a2"), "mu": ("mu1", "mu2"), "width": ("w1", "w2")}.items():
        col = np.empty(len(tok), np.float64)
        col[first] = p[v1]
        col[first[two] + 1] = p[v2][two]
        ev[key] = col
    u_lo, u_hi = np.log(steps_of(2))
    censored = np.where(ev["mu"] < u_lo, "left", np.where(ev["mu"] > u_hi, "right", ""))
    write_parquet(run.fit_events, {"tok_idx": tok, **ev, "resolved": ev["width"] > 0.1, "censored": censored},
                  metadata={"axis": "step"})
    cls = np.where(rng.random(n) < 0.9, CLASSES[np.minimum(rng.integers(0, 3, n), 2)], CLASSES[rng.integers(3, 6, n)])
    model = np.where(two, "sigmoid2", "sigmoid1")
    pq.write_table(_table({"tok_idx": np.arange(n), "b": p["b"].astype(np.float64), "c": np.zeros(n),
                           "n_events": n_ev, "r2": rng.beta(8, 1.2, n), "sse": rng.gamma(2, 2, n),
                           "class": cls, "model": model, "bic_gap": rng.gamma(2, 20, n)}), run.fit_tokens)
    u = np.log(steps_of(200))
    write_json(run.fit_summary, {"axis": "step", "n_tok": n, "u_min": float(u[0]), "u_max": float(u[-1]),
                                 "synthetic": True})
    hist_u = np.linspace(u[0] - 2, u[-1] + 2, 201)
    mids = (hist_u[1:] + hist_u[:-1]) / 2
    learn = np.histogram(ev["mu"], hist_u, weights=np.maximum(ev["a"], 0))[0] / np.diff(hist_u) / n
    rise = np.histogram(ev["mu"], hist_u, weights=np.minimum(ev["a"], 0))[0] / np.diff(hist_u) / n
    write_parquet(run.spectrum_density(), {"u": mids, "x": np.exp(mids), "rho": learn + rise, "rho_learn": learn,
                                           "rho_rise": rise})
    write_parquet(run.spectrum_curve(), {"x": np.exp(u), "u": u, "dldu_measured": np.interp(u, mids, learn + rise),
                                         "dldu_reconstructed": np.interp(u, mids, learn + rise)})
    write_json(run.spectrum_summary, {"axis": "step", "synthetic": True, "n_events": int(len(tok))})


def add_censored(run: RunDir) -> None:
    """Give a run built before events carried `censored` that column (midpoints outside the steps)."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    if "censored" in pq.ParquetFile(run.fit_events).schema_arrow.names:
        return
    t = pq.read_table(run.fit_events)
    lo, hi = np.log(steps_of(2))
    mu = t.column("mu")
    side = pc.if_else(pc.less(mu, lo), "left", pc.if_else(pc.greater(mu, hi), "right", ""))
    tmp = run.fit_events.with_suffix(".tmp.parquet")
    pq.write_table(t.append_column("censored", side.cast(pa.string())), tmp)
    tmp.rename(run.fit_events)
    print(f"added the censored column to {run.fit_events}")


def _table(cols: dict):
    import pyarrow as pa

    return pa.table({k: pa.array(v) for k, v in cols.items()})


def build(root: Path, n: int, k: int) -> RunDir:
    run = RunDir(root)
    meta = run.root / "bench.json"
    if meta.is_file() and json.loads(meta.read_text()) == {"n_tok": n, "n_ckpt": k}:
        print(f"reusing {root} ({n:,} tokens x {k} checkpoints)")
        add_censored(run)
        return run
    shutil.rmtree(root, ignore_errors=True)
    for d in (run.trace_dir, run.fit_dir, run.spectrum_dir):
        d.mkdir(parents=True)
    rng = np.random.default_rng(0)
    t0 = time.time()
    p = params(n, rng)
    write_loss(run, k, n, p, rng)
    steps = steps_of(k)
    write_parquet(run.trace_axis, {"step": steps, "tokens_seen": steps * 4096, "cum_lr": np.cumsum(np.full(k, 1e-3))})
    write_tokens(run, n, rng)
    write_fit(run, n, p, rng)
    write_json(run.trace_meta, {"n_tok": n, "n_ckpt": k, "axes": ["step", "tokens_seen", "cum_lr"],
                                "source": "synthetic"})
    meta.write_text(json.dumps({"n_tok": n, "n_ckpt": k}))
    size = sum(f.stat().st_size for f in root.rglob("*") if f.is_file())
    print(f"built {root}: {n:,} tokens x {k} checkpoints, {size / 2**30:.1f} GiB, {time.time() - t0:.0f} s")
    return run


def fit_on_disk(root: Path, n: int, k: int) -> int:
    """The largest token count (<= n) whose run fits in the free space of root's file system."""
    free = shutil.disk_usage(root.parent).free + (sum(f.stat().st_size for f in root.rglob("*")) if root.exists() else 0)
    per_tok = 4 * k + 120  # loss column + parquet rows (measured: ~110 bytes per token)
    if per_tok * n > 0.9 * free:
        m = int(0.9 * free / per_tok) // 1_000_000 * 1_000_000
        print(f"disk: {free / 2**30:.1f} GiB free at {root.parent}, not enough for {n:,} tokens; using {m:,}")
        return m
    return n


def start_server(root: Path) -> tuple[subprocess.Popen, str, float]:
    t0 = time.time()
    proc = subprocess.Popen([sys.executable, "-m", "tokenclock", "explore", str(root), "--port", "0", "--no-browser"],
                            stdout=subprocess.PIPE, text=True)
    for line in proc.stdout:
        if "tokenclock explore:" in line and " at " in line:
            return proc, line.split(" at ")[1].split()[0], time.time() - t0
    raise SystemExit(f"the server did not start (exit {proc.wait()})")


def timed(conn: http.client.HTTPConnection, paths: list[str]) -> float:
    t = time.perf_counter()
    for p in paths:
        conn.request("GET", p)
        r = conn.getresponse()
        body = r.read()
        if r.status != 200:
            raise SystemExit(f"{p}: {r.status} {body[:200]!r}")
    return time.perf_counter() - t


def queries(n: int, rng: np.random.Generator) -> dict[str, callable]:
    lo, hi = np.log(steps_of(2))
    words = [f"w{int(v)}" for v in rng.integers(1, 500, 3000)]

    def click():
        i = int(rng.integers(n))
        return [f"/api/run/0/token/{i}", f"/api/run/0/trajectory/{i}"]

    def window():
        s = int(rng.integers(n - 2048))
        return [f"/api/run/0/window?start={s}&n=2048", f"/api/run/0/colours?start={s}&n=2048&by=learning_time"]

    def brush():
        a = float(np.exp(rng.uniform(lo, hi - 0.7)))
        return [f"/api/run/0/events?x_min={a}&x_max={a * 2}&sign=learn&sort=a&limit=50"]

    def string_filter():
        return [f"/api/run/0/tokens?q={words.pop()}&sort=learning_time&desc=1&limit=50"]

    def curves_of_filter():
        return [f"/api/run/0/curves?of=filter&q={words.pop()}"]

    def curves_of_class():
        return [f"/api/run/0/curves?of=filter&class={rng.choice(['learned', 'forgotten', 'rise-then-fall'])}"]

    def curves_of_brush():
        a = float(np.exp(rng.uniform(lo, hi - 0.7)))
        return [f"/api/run/0/curves?of=brush&x_min={a}&x_max={a * 2}&sign=learn"]

    def find():
        return [f"/api/run/0/search?q=w{int(rng.integers(1, 500))}%20w&from={int(rng.integers(n))}"]

    return {"token click (JSON + trajectory)": click, "text window 2048 (texts + colours)": window,
            "spectrum brush (top 50 by amplitude)": brush, "string filter (top 50 by learning time)": string_filter,
            "selection panel: a string filter's curves": curves_of_filter,
            "selection panel: a class's curves (~30%)": curves_of_class,
            "selection panel: a brushed range's curves": curves_of_brush,
            "find across tokens (after the first)": find}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n-tok", type=int, default=10_000_000)
    ap.add_argument("--n-ckpt", type=int, default=200)
    ap.add_argument("--dir", type=Path, default=Path("/tmp/tokenclock-explore-bench"))
    ap.add_argument("--requests", type=int, default=60, help="timed requests per query kind")
    args = ap.parse_args()
    machine_header()
    import psutil

    n = fit_on_disk(args.dir, args.n_tok, args.n_ckpt)
    build(args.dir, n, args.n_ckpt)
    proc, url, startup = start_server(args.dir)
    try:
        host, port = url.split("//")[1].strip("/").split(":")
        conn = http.client.HTTPConnection(host, int(port), timeout=60)
        rng = np.random.default_rng(1)
        print(f"server {url} ready in {startup:.1f} s (opening and indexing the run); "
              f"{args.requests} requests per kind, 5 warm-up; {os.cpu_count()} cores, load average "
              f"{os.getloadavg()[0]:.1f} (every process on the machine)")
        print(f"{'query':<42} {'median ms':>10} {'p95 ms':>8} {'max ms':>8}")
        for name, make in queries(n, rng).items():
            first = timed(conn, make())  # the first find builds the joined text once
            for _ in range(4):
                timed(conn, make())
            ms = np.array([timed(conn, make()) for _ in range(args.requests)]) * 1e3
            print(f"{name:<42} {np.median(ms):>10.1f} {np.percentile(ms, 95):>8.1f} {ms.max():>8.1f}"
                  f"   (first request {first * 1e3:.0f} ms)")
        mem = psutil.Process(proc.pid).memory_info()
        peak = next((int(line.split()[1]) * 1024 for line in open(f"/proc/{proc.pid}/status")
                     if line.startswith("VmHWM")), 0)
        print(f"server RSS {mem.rss / 2**20:.0f} MiB (of which file-backed, shared {mem.shared / 2**20:.0f} MiB: "
              f"memmap pages and the page cache), peak {peak / 2**20:.0f} MiB; loss.npy is "
              f"{args.n_ckpt * n * 4 / 2**30:.1f} GiB")
    finally:
        proc.terminate()
        proc.wait(timeout=30)


if __name__ == "__main__":
    main()
