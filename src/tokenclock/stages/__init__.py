"""The pipeline's stages, one package each, in the order data flows between them:

    data/      corpus -> tokens        RUN/corpus/, RUN/tokens/
    train/     checkpoints             RUN/ckpt/
    trace/     loss matrix             RUN/trace/   (own runs, external series, losses.npz)
    fit/       learning events         RUN/fit/
    spectrum/  spectrum, reconstruction RUN/spectrum/
    report/    the HTML report          RUN/report/
    reshape/   a data schedule from a reference run's learning times

A stage reads the run directory its upstream stages wrote and writes its own folder; stages never
import the CLI, the pipeline or the config loader above them.
"""
