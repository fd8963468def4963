"""The train stage: the Llama-style model, its lr and checkpoint schedules, the training loop and
checkpoint I/O; writes RUN/ckpt/."""
