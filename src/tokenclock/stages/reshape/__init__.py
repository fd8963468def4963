"""The reshape stage: a data schedule for a new run, from a reference run's learning times."""
