"""tokenclock: when does each token get learned, and how do those moments add up to the scaling law?

Each CLI stage is one function here:

    import tokenclock as tc
    cfg = tc.load_config("demo")
    tc.train("runs/demo", cfg)        # corpus -> tokens -> checkpoints
    tc.trace("runs/demo", cfg.trace)  # per-token loss matrix
    tc.fit("runs/demo", cfg.fit)      # sigmoid learning events
    tc.spectrum("runs/demo")          # spectrum + reconstruction of -dL/dln(step)
    tc.report("runs/demo")            # runs/demo/report/index.html
"""
from __future__ import annotations

__version__ = "0.1.0"

_API = {
    "load_config": "config", "Config": "config",
    "build_corpus": "corpus", "read_documents": "corpus",
    "tokenize": "tokens",
    "train": "train",
    "trace": "trace",
    "fit": "fit", "fit_matrix": "fit", "fit_trajectories": "fit",
    "spectrum": "spectrum",
    "report": "report",
    "demo": "demo",
    "import_npz": "lossfile", "export_npz": "lossfile", "read_losses_npz": "lossfile",
    "RunDir": "rundir",
    "TokenclockError": "errors",
}

__all__ = sorted(_API)


def __getattr__(name: str):
    # Lazy: `import tokenclock` stays fast and does no work (torch loads on first use).
    if name in _API:
        import importlib

        return getattr(importlib.import_module(f".{_API[name]}", __name__), name)
    raise AttributeError(f"module 'tokenclock' has no attribute {name!r}")
