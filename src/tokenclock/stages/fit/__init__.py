"""The fit stage: sigmoid learning events for every token trajectory (batched Levenberg-Marquardt);
writes RUN/fit/."""
