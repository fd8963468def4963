"""tokenclock: when does each token get learned, and how do those moments add up to the scaling law?

The Python API is one function per CLI command, named for it; the code of each stage lives in
`tokenclock.stages.<stage>` (so a function and a module never share a name):

    import tokenclock as tc
    cfg = tc.load_config("demo")
    tc.train("runs/demo", cfg)        # corpus -> tokens -> checkpoints
    tc.trace("runs/demo", cfg.trace)  # per-token loss matrix
    tc.fit("runs/demo", cfg.fit)      # sigmoid learning events
    tc.spectrum("runs/demo")          # spectrum + reconstruction of -dL/dln(step)
    tc.report("runs/demo")            # runs/demo/report/index.html
    avg = tc.RunDir("runs/demo", weights="avg")  # the averaged weights (train.avg=ema), any stage
    tc.spectrum(avg); tc.replicate("runs/demo", "runs/demo-seed1")  # replicate ceiling
    tracker = tc.Tracker("runs/mine", model, val=val_tokens, steps=2000)  # in your own loop:
    tracker.step(step, tokens_seen=..., lr=...)  # the same trace/, no checkpoints (tokenclock.track)

Importing tokenclock is cheap (numpy, pyyaml); torch, transformers and matplotlib load on first use.
"""
from __future__ import annotations

__version__ = "0.3.0"

from tokenclock.config import Config, load_config
from tokenclock.errors import TokenclockError
from tokenclock.pipeline import demo, train
from tokenclock.rundir import RunDir
from tokenclock.stages.corpus.stage import build_corpus, read_documents
from tokenclock.stages.fit.fitter import fit_matrix, fit_trajectories
from tokenclock.stages.fit.stage import fit
from tokenclock.stages.report.stage import report
from tokenclock.stages.reshape.stage import reshape
from tokenclock.stages.spectrum.replicate import replicate
from tokenclock.stages.spectrum.stage import spectrum
from tokenclock.stages.tokens.stage import tokenize
from tokenclock.stages.trace.modes import trace_checkpoints
from tokenclock.stages.trace.npz import export_npz, import_npz, read_losses_npz
from tokenclock.stages.trace.stage import trace
from tokenclock.track import Tracker

__all__ = ["Config", "RunDir", "TokenclockError", "build_corpus", "demo", "export_npz", "fit",
           "fit_matrix", "fit_trajectories", "import_npz", "load_config", "read_documents",
           "read_losses_npz", "replicate", "Tracker", "report", "reshape", "spectrum", "tokenize", "trace", "trace_checkpoints",
           "train"]
