"""The report stage: one static HTML page with PNG figures, read from a run's artifacts; writes
RUN/report/."""
