"""tokenclock: when does each token get learned, and how do those moments add up to the scaling law?

Each CLI stage is one function here:

    import tokenclock as tc
    cfg = tc.load_config("demo")
    tc.train("runs/demo", cfg)        # corpus -> tokens -> checkpoints
    tc.trace("runs/demo", cfg.trace)  # per-token loss matrix
    tc.fit("runs/demo", cfg.fit)      # sigmoid learning events
    tc.spectrum("runs/demo")          # spectrum + reconstruction of -dL/dln(step)
    tc.report("runs/demo")            # runs/demo/report/index.html

The stage functions share their names with their modules (`tokenclock.fit` the function,
`tokenclock.fit` the module), so they are bound here once, after the modules are imported; code
that needs a stage *module* uses importlib.import_module("tokenclock.fit"). Importing these
modules is cheap (numpy only; torch, transformers and matplotlib load on first use).
"""
from __future__ import annotations

__version__ = "0.1.0"

from .config import Config, load_config
from .corpus import build_corpus, read_documents
from .demo import demo
from .errors import TokenclockError
from .fit import fit, fit_matrix, fit_trajectories
from .lossfile import export_npz, import_npz, read_losses_npz
from .report import report
from .rundir import RunDir
from .spectrum import spectrum
from .tokens import tokenize
from .trace import trace
from .train import train

__all__ = ["Config", "RunDir", "TokenclockError", "build_corpus", "demo", "export_npz", "fit",
           "fit_matrix", "fit_trajectories", "import_npz", "load_config", "read_documents",
           "read_losses_npz", "report", "spectrum", "tokenize", "trace", "train"]
