"""The trace stage: the per-token loss matrix RUN/trace/loss.npy over a checkpoint series (a
tokenclock run, any Hugging Face checkpoint series, or a paper-format losses.npz)."""
