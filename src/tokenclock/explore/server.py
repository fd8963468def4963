"""The explorer's web server: a Starlette app over opened runs (GET only; JSON for small answers,
little-endian float32 bytes for arrays; every error a one-line JSON message, never a traceback),
the page from static/, and `serve`, which opens the runs, binds the port (saying so when it is
taken) and runs uvicorn until Ctrl-C.
"""
from __future__ import annotations

import errno
import functools
import os
import shutil
import socket
import sys
import threading
import time
import webbrowser
from pathlib import Path

import numpy as np
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from tokenclock.errors import ConfigError, TokenclockError
from tokenclock.explore import files, find, queries, selection, token
from tokenclock.explore.data import ExploreError, RunData, open_run
from tokenclock.rundir import AVG, RAW

STATIC = Path(__file__).parent / "static"


class PortInUseError(TokenclockError):
    """The port to listen on is taken (exit code 11, an OS problem)."""

    exit_code = 11


def _error(message: str, status: int, fix: str | None = None) -> JSONResponse:
    return JSONResponse({"error": message, **({"fix": fix} if fix else {})}, status_code=status)


class Ask:
    """One request as a view sees it: its query parameters and the runs the app serves."""

    def __init__(self, request: Request):
        self.request = request
        self.p = dict(request.query_params)
        self.runs: list[RunData] = request.app.state.runs

    def run(self, r: str) -> RunData:
        k = _int(r, "run")
        if not 0 <= k < len(self.runs):
            raise ExploreError(f"run {k} does not exist ({len(self.runs)} open)",
                               f"pass a run index in 0..{len(self.runs) - 1} (GET /api/runs lists them)", status=404)
        return self.runs[k]

    def int(self, key: str, default: int, lo: int = 0, hi: int | None = None) -> int:
        return queries.integer(self.p, key, default, lo, hi)

    def flag(self, key: str) -> bool:
        return queries.flag(self.p, key)

    def choice(self, key: str, default: str, allowed: tuple[str, ...]) -> str:
        v = self.p.get(key, default)
        if v not in allowed:
            raise ExploreError(f"unknown {key} {v!r}", f"choose one of: {', '.join(allowed)}")
        return v


def endpoint(fn):
    """A sync view fn(Ask, **path) (run in Starlette's thread pool) whose errors become one-line
    JSON answers."""
    @functools.wraps(fn)
    def view(request: Request):
        try:
            return fn(Ask(request), **request.path_params)
        except ExploreError as e:
            return _error(e.message, e.status, e.fix)
        except TokenclockError as e:  # an artifact that cannot be read, named with its fix
            return _error(e.message, 409, e.fix)
        except Exception as e:  # a bug: one line on the terminal and in the page
            line = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
            print(f"tokenclock explore: error: {request.url.path}: {line}", file=sys.stderr)
            return _error(f"internal error ({line})", 500)
    return view


def _int(s: str, what: str) -> int:
    try:
        return int(s)
    except (TypeError, ValueError):
        raise ExploreError(f"{what} {s!r} is not an integer", f"pass a {what} index: 0, 1, 2 ...") from None


def _range(values: np.ndarray) -> list:
    v = values[:: max(1, len(values) // 200_000)]  # a sample is enough for a colour scale
    v = v[np.isfinite(v)]
    return [float(np.percentile(v, 1)), float(np.percentile(v, 99))] if len(v) else [0.0, 1.0]


def run_info(runs: list[RunData], r: int) -> dict:
    d = runs[r]
    fi = d.fit
    xs = d.x[d.keep]
    return token.plain({
        "index": r, "name": d.name, "root": str(d.run.root), "n_tok": d.n_tok, "n_ckpt": d.n_ckpt,
        "axis": d.axis, "x": d.x.tolist(), "x_fit": d.x_fit.tolist(), "u_range": np.log(xs[[0, -1]]).tolist()
        if len(xs) else [0, 1], "has_fit": fi is not None, "has_spectrum": d.has_spectrum,
        "has_text": d.token_id is not None, "has_counts": d.vocab_count is not None,
        "classes": fi.classes if fi else [], "models": fi.models if fi else [],
        **d.cache.setdefault("ranges", {"final_range": _range(d.final()), "drop_range": _range(d.drop())}),
        "notes": d.notes,
        "sources": files.sources(d), "window_max": queries.WINDOW_MAX,
        "compare": {str(o): token.mismatch(d, runs[o]) for o in range(len(runs)) if o != r},
        "series": d.series, "siblings": {o.series: k for k, o in enumerate(runs) if o.run.root == d.run.root},
        "censored": d.fit is not None and d.fit.ev_cens is not None,
        "n_censored": int((d.fit.ev_cens > 0).sum()) if d.fit is not None and d.fit.ev_cens is not None else 0})


def _bytes(data: bytes) -> Response:
    return Response(data, media_type="application/octet-stream", headers={"Cache-Control": "no-store"})


# ----------------------------------------------------------------------------- the views


@endpoint
def runs_view(ask: Ask):
    return JSONResponse([run_info(ask.runs, k) for k in range(len(ask.runs))])


@endpoint
def window_view(ask: Ask, r: str):
    return JSONResponse(queries.window(ask.run(r), ask.int("start", 0), ask.int("n", 2048, 1)))


@endpoint
def colours_view(ask: Ask, r: str):
    v = queries.colours(ask.run(r), ask.p.get("by", "learning_time"), ask.int("start", 0), ask.int("n", 2048, 1),
                        ask.flag("censored"))
    return _bytes(np.asarray(v, dtype="<f4").tobytes())


@endpoint
def search_view(ask: Ask, r: str):
    return JSONResponse(find.search(ask.run(r), ask.p.get("q", ""), ask.flag("regex"), ask.int("from", 0),
                                    ask.choice("dir", "next", ("next", "back")) == "back"))


@endpoint
def token_view(ask: Ask, r: str, i: str):
    return JSONResponse(token.detail(ask.run(r), _int(i, "token")))


@endpoint
def trajectory_view(ask: Ask, r: str, i: str):
    return _bytes(token.trajectory(ask.run(r), _int(i, "token")))


@endpoint
def compare_view(ask: Ask, i: str):
    which = [_int(s, "run") for s in (ask.p.get("runs") or "").split(",") if s]
    if len(set(which)) != len(which):
        raise ExploreError(f"runs={ask.p.get('runs')!r} names a run twice", "name each run once: runs=0,1")
    return JSONResponse(token.compare(ask.runs, which, _int(i, "token")))


@endpoint
def table_view(ask: Ask, r: str):
    return JSONResponse(token.plain(queries.table(
        ask.run(r), queries.Filter.parse(ask.p), ask.choice("sort", "tok_idx", queries.SORTS), ask.flag("desc"),
        ask.int("offset", 0), ask.int("limit", 50, 1, queries.PAGE_MAX))))


@endpoint
def brush_view(ask: Ask, r: str):
    lo, hi = queries.number(ask.p, "x_min"), queries.number(ask.p, "x_max")
    return JSONResponse(token.plain(queries.brush(
        ask.run(r), lo, hi, ask.p.get("sign", "learn"), ask.p.get("sort", "a"), ask.int("offset", 0),
        ask.int("limit", 50, 1, queries.PAGE_MAX), ask.flag("censored"))))


@endpoint
def curves_view(ask: Ask, r: str):
    ask.run(r)
    return _bytes(selection.curves(ask.runs, _int(r, "run"), ask.p))


@endpoint
def spectrum_view(ask: Ask, r: str):
    return JSONResponse(files.spectrum(ask.run(r)))


@endpoint
def artifact_view(ask: Ask, r: str):
    return JSONResponse(files.describe(ask.run(r), ask.p.get("file", "")))


@endpoint
def download_view(ask: Ask, r: str, name: str):
    what, _, fmt = name.partition(".")
    path = files.download(ask.run(r), what, fmt, ask.p)
    return FileResponse(path, filename=path.name, background=BackgroundTask(shutil.rmtree, path.parent, True))


def index_view(request: Request):
    return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-store"})


async def not_found(request: Request, exc: HTTPException):
    return _error(f"{request.url.path}: {exc.detail}", exc.status_code)


def create_app(runs: list[RunData]) -> Starlette:
    """The app over `runs` (opened with data.open_run); routes under /api/, the page at /."""
    api = "/api/run/{r}"
    routes = [Route("/", index_view), Route("/api/runs", runs_view), Route(f"{api}/window", window_view),
              Route(f"{api}/colours", colours_view), Route(f"{api}/search", search_view),
              Route(f"{api}/token/{{i}}", token_view), Route(f"{api}/trajectory/{{i}}", trajectory_view),
              Route("/api/compare/{i}", compare_view), Route(f"{api}/tokens", table_view),
              Route(f"{api}/events", brush_view), Route(f"{api}/spectrum", spectrum_view),
              Route(f"{api}/curves", curves_view),
              Route(f"{api}/artifact", artifact_view), Route(f"{api}/download/{{name}}", download_view),
              Mount("/static", StaticFiles(directory=STATIC), name="static")]
    app = Starlette(routes=routes, exception_handlers={HTTPException: not_found})
    app.state.runs = runs
    return app


# ----------------------------------------------------------------------------- serving


def open_runs(paths: list[str | Path], log=print) -> list[RunData]:
    """Open every run (names made unique with their parent folder where two share one), and beside
    each its averaged-weight series where it has one traced (RunDir.series(AVG))."""
    names = [Path(p).resolve().name for p in paths]
    runs = []
    for p, name in zip(paths, names):
        if names.count(name) > 1:
            name = f"{Path(p).resolve().parent.name}/{name}"
        runs.append(open_run(p, name, log=log))
        series = getattr(runs[-1].run, "series", None)  # weight series: RunDir.series(weights)
        if series is not None and runs[-1].series == RAW and series(AVG).trace_loss.is_file():
            runs.append(open_run(series(AVG), f"{name} ({AVG})", log=log))
    return runs


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on host:port, or one line saying the port is taken and which one is free."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP: asyncio sets TCP_NODELAY only on sockets that say they are TCP (else each
    # response waits ~40 ms for a delayed ACK)
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        if e.errno == errno.EADDRINUSE:
            raise PortInUseError(f"port {port} on {host} is in use (another tokenclock explore or server)",
                                 f"pass --port {_free_port(host, port)}") from None
        raise ConfigError(f"cannot listen on {host}:{port} ({e.strerror or e})",
                          "pass --host 127.0.0.1 (or an address of this machine)") from None
    sock.listen(128)
    return sock


def _free_port(host: str, port: int) -> str:
    for p in range(port + 1, min(port + 50, 65535)):
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
            try:
                s.bind((host, p))
                return str(p)
            except OSError:
                continue
    return "0 (any free port)"


def _open_browser(url: str) -> None:
    """Open the page where a browser can show it (not on a Linux machine without a display)."""
    if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        return
    try:
        webbrowser.open(url, new=2)
    except Exception:  # no browser: the printed URL is enough
        pass


def _server(runs: list[RunData]):
    import uvicorn

    config = uvicorn.Config(create_app(runs), log_level="warning", access_log=False, lifespan="off")
    return uvicorn.Server(config)


def url_of(sock: socket.socket, host: str) -> str:
    port = sock.getsockname()[1]
    shown = "127.0.0.1" if host in ("0.0.0.0", "") else (f"[{host}]" if ":" in host else host)
    return f"http://{shown}:{port}/"


def serve(paths: list[str | Path], host: str = "127.0.0.1", port: int = 8765, open_browser: bool = True,
          log=print) -> str:
    """`tokenclock explore`: open the runs, listen on host:port and answer until Ctrl-C."""
    runs = open_runs(paths, log=log)
    sock = bind(host, port)
    url = url_of(sock, host)
    for d in runs:
        for note in d.notes:
            log(f"note: {d.name}: {note}")
        for o in runs:
            if o is not d and runs.index(o) > runs.index(d) and (why := token.mismatch(d, o)):
                log(f"note: {why}: the compare view refuses them, the rest works")
    log(f"tokenclock explore: {len(runs)} run(s) at {url} (read-only; Ctrl-C to stop)")
    if open_browser:
        threading.Timer(0.5, _open_browser, [url]).start()
    try:
        _server(runs).run(sockets=[sock])
    except KeyboardInterrupt:  # uvicorn re-raises the Ctrl-C it handled: stopping is the normal end here
        pass
    log("tokenclock explore: stopped")
    return url


class Background:
    """The server in a thread (tests, benchmark, screenshots): `.url`, then `.stop()`."""

    def __init__(self, runs: list[RunData], host: str = "127.0.0.1", port: int = 0):
        self.sock = bind(host, port)
        self.url = url_of(self.sock, host)
        self.server = _server(runs)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)
        self.thread.start()
        t0 = time.time()
        while not self.server.started and time.time() - t0 < 30:
            time.sleep(0.02)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.sock.close()
