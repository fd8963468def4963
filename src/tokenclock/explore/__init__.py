"""`tokenclock explore`: a read-only local web app over run-like directories. data.py opens a run
(memory-mapped trace/loss.npy, compact per-token arrays), queries.py answers the page's questions
from them and from DuckDB over the parquet tables (find.py the text search, selection.py the curves
of a selection), server.py is the Starlette app and the uvicorn server, static/ the page (uPlot
vendored from npm, with its licence).

Nothing here is imported by `import tokenclock`: the CLI imports tokenclock.explore.server inside
its command, so starlette, uvicorn and duckdb load only when a user explores.
"""
