"""The pipeline's stages, one package each, in the order data flows between them:

    corpus/    documents, split        RUN/corpus/
    tokens/    BPE, token streams      RUN/tokens/
    train/     checkpoints             RUN/ckpt/
    trace/     loss matrix             RUN/trace/   (own runs, external series, losses.npz)
    fit/       learning events         RUN/fit/
    spectrum/  spectrum, reconstruction RUN/spectrum/
    report/    the HTML report          RUN/report/
    reshape/   a data schedule from a reference run's learning times

Each package has the same anatomy: config.py (its config section's dataclass), stage.py (the
stage's entry point, the one that reads and writes the run directory), then pure modules named for
what they hold. A stage reads the run directory its upstream stages wrote and writes its own
folder; stages never import the CLI, the pipeline or the config loader above them.
"""
