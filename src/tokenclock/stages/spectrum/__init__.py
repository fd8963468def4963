"""The spectrum stage: the learning-time spectrum and the reconstruction of -dL/du from the
events; writes RUN/spectrum/."""
