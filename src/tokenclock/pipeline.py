"""The stages of one run in order: `prepare` (corpus -> tokens), `train` (prepare, then
checkpoints: what tc.train and `tokenclock train` run), `fit_npz` (a losses.npz, then its fit) and
`demo` (every stage on the built-in corpus, then the headline numbers).
Every stage resumes or is skipped when done, so rerunning continues where it stopped.
"""
from __future__ import annotations

import dataclasses
import time
from pathlib import Path

from tokenclock import dist
from tokenclock.artifacts import read_json
from tokenclock.config import Config, load_config
from tokenclock.formatting import fmt, pct
from tokenclock.forward import resolve_device
from tokenclock.rundir import AVG, RAW, RunDir
from tokenclock.stages.corpus.stage import build_corpus
from tokenclock.stages.fit.config import FitConfig
from tokenclock.stages.fit.stage import fit
from tokenclock.stages.report.stage import report
from tokenclock.stages.spectrum.stage import spectrum
from tokenclock.stages.tokens.stage import tokenize
from tokenclock.stages.trace.npz import import_npz
from tokenclock.stages.trace.stage import trace
from tokenclock.stages.train import stage as train_stage


def prepare(run_dir: str | Path, cfg: Config, *, progress: bool = True) -> dict:
    """The corpus and tokens stages (each skipped when done); returns RUN/tokens/meta.json. Under
    torchrun rank 0 builds them and every rank gets the result."""
    if dist.launched():  # the backend follows the device (resolving it imports torch)
        dist.init(resolve_device(cfg.train.device))
    return dist.run_on_main(lambda: (build_corpus(run_dir, cfg.corpus, progress=progress and dist.current().main),
                                     tokenize(run_dir, cfg.tokens, progress=progress and dist.current().main))[1])


def train(run_dir: str | Path, cfg: Config | None = None, *, progress: bool = True,
          init_root: str | Path | None = None) -> dict:
    """corpus -> tokens -> checkpoints for one run (each stage resumes or is skipped when done);
    returns the train summary. `init_root`: what a relative train.init_from is relative to."""
    cfg = cfg or Config()
    prepare(run_dir, cfg, progress=progress)
    return train_stage.train(run_dir, cfg, progress=progress, init_root=init_root)


def fit_npz(npz: str | Path, out_dir: str | Path, cfg: FitConfig | None = None, *,
            progress: bool = True) -> dict:
    """A paper-format losses.npz -> a run-like OUT (trace/) -> its fit, along the one axis the file
    names (cfg's axis and extra clocks are set to it). A directory written by `export --hf-dataset`
    is checked against its manifest's sha256s first and gives its first axis."""
    if Path(npz).is_dir():
        from tokenclock.export import import_dataset

        axis = import_dataset(npz, out_dir)["axis"]
    else:
        axis = import_npz(npz, out_dir)
    return fit(out_dir, dataclasses.replace(cfg or FitConfig(), axis=axis, extra_axes=[]), progress=progress)


def demo(out: str | Path = "runs/demo", config: str | Path | None = "demo",
         overrides: list[str] | None = None, *, progress: bool = True) -> dict:
    """Run the whole T-axis study; returns the headline numbers (also printed)."""
    cfg = load_config(config, overrides)
    run = RunDir(out)
    t0 = time.time()
    stages = [("train (corpus, tokenizer, checkpoints)", lambda: train(run.root, cfg, progress=progress))]
    for w in demo_series(cfg):  # the averaged series beside the raw one when train.avg keeps it
        view, label = run.series(w), "" if w == RAW else f" ({w} weights)"
        stages += [(f"trace{label}", lambda v=view: trace(v, cfg.trace, progress=progress)),
                   (f"fit{label}", lambda v=view: fit(v, cfg.fit, progress=progress)),
                   (f"spectrum{label}", lambda v=view: spectrum(v, cfg.spectrum, progress=progress))]
    stages.append(("report", lambda: report(run.root)))
    for i, (name, fn) in enumerate(stages, 1):
        t = time.time()
        print(f"[{i}/{len(stages)}] {name} ...", flush=True)
        fn()
        print(f"[{i}/{len(stages)}] {name} done in {time.time() - t:.0f} s", flush=True)
    head = headline(run)
    if AVG in demo_series(cfg):
        head[AVG] = headline(run.series(AVG))
    head["seconds"] = round(time.time() - t0, 1)
    print(format_headline(head))
    return head


def demo_series(cfg: Config) -> list[str]:
    """The weight series the demo traces: raw, and avg when train.avg keeps averaged weights."""
    return [RAW] + ([AVG] if cfg.train.avg != "none" else [])


def headline(run: RunDir) -> dict:
    """The numbers a reader wants first, read from the artifacts."""
    tmeta = read_json(run.trace_meta)
    fsum = read_json(run.fit_summary)
    ssum = read_json(run.spectrum_summary)
    return {
        "run": str(run.root),
        "tokens_traced": tmeta["n_tok"],
        "checkpoints": tmeta["n_ckpt"],
        "sigmoid_share": fsum.get("sigmoid_share"),
        "median_r2": fsum.get("median_r2"),
        "class_shares": fsum.get("class_share"),
        "axis": ssum.get("axis"),
        "reconstruction_r2": ssum.get("reconstruction_r2"),
        "reconstruction_r2_heldout": ssum.get("reconstruction_r2_heldout"),
        "reconstruction_r2_heldout_after_warmup": ssum.get("reconstruction_r2_heldout_after_warmup"),
        "reconstruction_r2_block_heldout_after_warmup": ssum.get("reconstruction_r2_block_heldout_after_warmup"),
        "token_split_r2_after_warmup": ssum.get("token_split_r2_after_warmup"),
        "token_split_ceiling_r2_after_warmup": ssum.get("token_split_ceiling_r2_after_warmup"),
        "best_clock": ssum.get("best_clock"),
        "alpha_measured": ssum.get("alpha_measured"),
        "alpha_spectrum": ssum.get("alpha_spectrum"),
        "report": str(run.report_html),
    }


def format_headline(h: dict) -> str:
    """The demo's closing lines: shares as percentages, scores with 3 decimals, missing as n/a."""
    def f3(key: str, d: dict = h) -> str:
        return fmt(d.get(key), ".3f")

    series = [(RAW, h)] + ([(AVG, h[AVG])] if h.get(AVG) else [])
    rows = [f"  {'-dL/dln(' + str(h['axis']) + ') R^2':<40}" + "".join(f"{w + ' weights':>16}" for w, _ in series)]
    for key, label in (("reconstruction_r2", "in-sample"), ("reconstruction_r2_heldout", "held-out (every other)"),
                       ("reconstruction_r2_heldout_after_warmup", "held-out, after warmup"),
                       ("reconstruction_r2_block_heldout_after_warmup", "held-out blocks, after warmup"),
                       ("token_split_r2_after_warmup", "token split, after warmup"),
                       ("token_split_ceiling_r2_after_warmup", "token-split ceiling, after warmup")):
        rows.append(f"  {label:<40}" + "".join(f"{f3(key, d):>16}" for _, d in series))
    return "\n".join([
        f"tokenclock demo: {h['run']}",
        f"  tokens traced            {h['tokens_traced']:,} x {h['checkpoints']} checkpoints",
        f"  tokens following a sigmoid {pct(h['sigmoid_share'])} (median r2 {f3('median_r2')})",
        f"  reconstruction R^2 of -dL/dln({h['axis']}): in-sample {f3('reconstruction_r2')}, "
        f"held-out {f3('reconstruction_r2_heldout')}, held-out after warmup "
        f"{f3('reconstruction_r2_heldout_after_warmup')}; best clock {h['best_clock']}",
        *rows,
        f"  power-law exponent: measured {f3('alpha_measured')}, from spectrum {f3('alpha_spectrum')}",
        f"  report: {h['report']}",
    ])
