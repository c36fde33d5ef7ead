"""Health, readiness and metrics over HTTP, served by uvicorn inside the worker's event loop.

Routes (one port, ``PREVIEW_HEALTH_PORT``):

- ``GET /healthz``: liveness. 200 while the fetch loop task is alive and has polled Redis within
  ``stall_seconds`` (or is draining, or cannot poll because Redis is down: a restart would not
  help then); 503 otherwise.
- ``GET /readyz``: readiness. 200 when Redis answers a PING within ``ping_timeout`` and the
  worker is not draining; 503 otherwise.
- ``GET /metrics``: Prometheus text format, OpenMetrics when the ``Accept`` header asks for it.
- ``GET /api/preview/worker/health``: detailed JSON (see :func:`health_report`); 200 when
  healthy or draining, 503 when Redis is unreachable or the fetch loop stalled, with
  ``failing`` naming the part.

Nothing served here contains the Redis URL, a host name of Redis or a password: Redis errors
are reported by exception class only.

``preview-worker healthcheck`` (:func:`healthcheck`) asks the detailed health route of the local
server with the standard library's HTTP client and exits 0 (healthy or draining) or 1.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import http.client
import json
import logging
import socket
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Generator
from typing import Any

import uvicorn
from prometheus_client.exposition import choose_encoder
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from . import __version__
from .errors import ConfigError
from .metrics import STATES
from .settings import Settings, redact_url
from .status import WorkerStatus

HEALTH_PATH = "/api/preview/worker/health"
log = logging.getLogger(__name__)
DEFAULT_STALL_SECONDS = Settings().stall_seconds
DEFAULT_PING_TIMEOUT = 1.0


def stall_seconds_of(status: WorkerStatus) -> float:
    """``PREVIEW_STALL_SECONDS`` of the worker (its ``settings``), else the default."""
    settings = getattr(status, "settings", None)
    if isinstance(settings, Settings):
        return settings.stall_seconds
    return DEFAULT_STALL_SECONDS


async def _ping(status: WorkerStatus, limit: float) -> tuple[float | None, str | None]:
    """(round trip ms, None) or (None, error class name); never waits longer than ``limit`` s."""
    try:
        async with asyncio.timeout(limit):
            return await status.redis_ping_ms(), None
    except TimeoutError:
        return None, "timeout"
    except Exception as exc:  # any Redis failure; its message may name the host: not shown
        return None, type(exc).__name__


def _stalled(status: WorkerStatus, stall_seconds: float) -> bool:
    """True when the fetch loop is dead or has not polled for ``stall_seconds``.

    A fetch loop waiting for a free slot (every slot busy with a job) is not stalled: long
    renders must not get a busy worker restarted.
    """
    if not status.fetch_loop_alive():
        return True
    if status.in_flight() >= status.concurrency:
        return False
    since = status.seconds_since_poll()
    if since is None:  # not polled yet: stalled only once it had the time to
        return status.uptime_seconds() > stall_seconds
    return since > stall_seconds


async def health_report(
    status: WorkerStatus, *, stall_seconds: float, ping_timeout: float
) -> tuple[int, dict[str, Any]]:
    """The detailed health document and its HTTP status code."""
    ping_ms, ping_error = await _ping(status, ping_timeout)
    draining = status.draining()
    stalled = _stalled(status, stall_seconds)
    failing: list[str] = []
    if ping_error is not None:
        failing.append("redis")
    if stalled and not draining:  # the fetch loop stops on purpose while draining
        failing.append("fetch_loop")
    metrics = status.metrics
    since = status.seconds_since_poll()
    refreshed = metrics.depths_refreshed_at
    state = "unhealthy" if failing else ("draining" if draining else "ok")
    body: dict[str, Any] = {
        "status": state,
        "failing": failing,
        "redis": {
            "connected": ping_error is None,
            "roundTripMs": None if ping_ms is None else round(ping_ms, 3),
            "error": ping_error,
        },
        "queue": {
            "name": metrics.queue,
            "depths": {s: metrics.depths[s] for s in STATES if s in metrics.depths},
            "depthsAgeSeconds": None if refreshed is None else round(time.time() - refreshed, 3),
        },
        "worker": {
            "id": status.worker_id,
            "version": __version__,
            "track": status.track,
            "concurrency": status.concurrency,
            "inFlight": status.in_flight(),
            "secondsSincePoll": None if since is None else round(since, 3),
            "fetchLoopAlive": status.fetch_loop_alive(),
            "stalled": stalled,
            "stallSeconds": stall_seconds,
            "draining": draining,
            "uptimeSeconds": round(status.uptime_seconds(), 3),
        },
    }
    return (503 if failing else 200), body


def create_app(
    status: WorkerStatus,
    *,
    stall_seconds: float | None = None,
    ping_timeout: float = DEFAULT_PING_TIMEOUT,
) -> Starlette:
    """The Starlette app of the four routes, reading ``status`` on every request.

    ``stall_seconds`` defaults to :func:`stall_seconds_of` ``(status)``.
    """
    stall_seconds = stall_seconds_of(status) if stall_seconds is None else stall_seconds

    async def healthz(request: Request) -> Response:
        if status.draining():
            return PlainTextResponse("ok: draining\n")
        if not status.fetch_loop_alive():
            return PlainTextResponse("fetch loop is not running\n", status_code=503)
        if _stalled(status, stall_seconds):
            _, error = await _ping(status, ping_timeout)
            if error is None:
                return PlainTextResponse(
                    f"fetch loop has not polled Redis for more than {stall_seconds:g}s\n",
                    status_code=503,
                )
            return PlainTextResponse(f"ok: waiting for Redis ({error})\n")
        return PlainTextResponse("ok\n")

    async def readyz(request: Request) -> Response:
        if status.draining():
            return PlainTextResponse("draining\n", status_code=503)
        _, error = await _ping(status, ping_timeout)
        if error is not None:
            return PlainTextResponse(f"redis unreachable ({error})\n", status_code=503)
        return PlainTextResponse("ready\n")

    async def metrics(request: Request) -> Response:
        encoder, content_type = choose_encoder(request.headers.get("accept", ""))
        return Response(encoder(status.metrics.registry), media_type=content_type)

    async def health(request: Request) -> Response:
        code, body = await health_report(
            status, stall_seconds=stall_seconds, ping_timeout=ping_timeout
        )
        return JSONResponse(body, status_code=code, headers={"Cache-Control": "no-store"})

    return Starlette(
        routes=[
            Route("/healthz", healthz, methods=["GET"]),
            Route("/readyz", readyz, methods=["GET"]),
            Route("/metrics", metrics, methods=["GET"]),
            Route(HEALTH_PATH, health, methods=["GET"]),
        ]
    )


class _QuietServer(uvicorn.Server):
    """A uvicorn server that leaves signal handling to the worker."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield

    def install_signal_handlers(self) -> None:  # uvicorn < 0.29
        return None


class HealthServer:
    """Serves :func:`create_app` on ``host:port`` as a task of the running event loop.

    :meth:`start` binds the socket itself (so a busy port raises :class:`OSError` at once) and
    returns once uvicorn accepts connections; ``port=0`` picks a free port, read back from
    :attr:`port`.
    """

    def __init__(
        self,
        status: WorkerStatus,
        *,
        host: str = "0.0.0.0",
        port: int = 3000,
        stall_seconds: float | None = None,
        ping_timeout: float = DEFAULT_PING_TIMEOUT,
        start_timeout: float = 10.0,
    ) -> None:
        self.host = host
        self.port = port
        self.start_timeout = start_timeout
        self.app = create_app(status, stall_seconds=stall_seconds, ping_timeout=ping_timeout)
        self._server: _QuietServer | None = None
        self._task: asyncio.Task[None] | None = None
        self._sock: socket.socket | None = None

    def _bind(self) -> socket.socket:
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((self.host, self.port))
            sock.listen(128)
            sock.setblocking(False)
        except OSError:
            sock.close()
            raise
        return sock

    async def start(self) -> None:
        if self._task is not None:
            raise RuntimeError("health server already started")
        self._sock = self._bind()
        self.port = self._sock.getsockname()[1]
        # uvicorn's info lines ("Started server process") describe a process of its own, which
        # this is not; keep its warnings and errors only.
        uvicorn_log = logging.getLogger("uvicorn.error")
        if uvicorn_log.level < logging.WARNING:
            uvicorn_log.setLevel(logging.WARNING)
        config = uvicorn.Config(
            self.app,
            lifespan="off",
            log_config=None,
            access_log=False,
            server_header=False,
            timeout_graceful_shutdown=2,
        )
        self._server = _QuietServer(config)
        self._task = asyncio.create_task(
            self._server.serve(sockets=[self._sock]), name="health-server"
        )
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.start_timeout
        while not self._server.started:
            if self._task.done():
                await self._task  # raises what stopped it
                raise RuntimeError("health server stopped during start")
            if loop.time() > deadline:
                await self.stop()
                raise TimeoutError(f"health server not started in {self.start_timeout:g}s")
            await asyncio.sleep(0.01)
        log.info("health server listening", extra={"host": self.host, "port": self.port})

    async def stop(self) -> None:
        server, task, sock = self._server, self._task, self._sock
        self._server = self._task = self._sock = None
        if server is not None:
            server.should_exit = True
        if task is not None:
            try:
                await asyncio.wait_for(task, timeout=5)
            except (TimeoutError, asyncio.CancelledError):
                task.cancel()
        if sock is not None:
            sock.close()


def healthcheck(url: str, timeout: float = 2.0) -> int:
    """GET ``url``; 0 when it answers 2xx within ``timeout`` seconds, else 1 (with a reason on
    stderr). Meant for exec probes: ``preview-worker healthcheck``."""
    shown = redact_url(url)
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            code = int(response.status)
    except urllib.error.HTTPError as exc:
        code = exc.code
        detail = _failing(exc)
        print(f"unhealthy: {shown} answered {code}{detail}", file=sys.stderr)
        return 1
    except (urllib.error.URLError, OSError, http.client.HTTPException, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        print(f"unhealthy: {shown} did not answer: {reason}", file=sys.stderr)
        return 1
    if 200 <= code < 300:
        return 0
    print(f"unhealthy: {shown} answered {code}", file=sys.stderr)
    return 1


def _failing(exc: urllib.error.HTTPError) -> str:
    """`` (failing: redis)`` from a health document, or an empty string."""
    try:
        body = json.loads(exc.read(65536) or b"{}")
    except (ValueError, OSError):
        return ""
    failing = body.get("failing") if isinstance(body, dict) else None
    if isinstance(failing, list) and failing:
        return f" (failing: {', '.join(str(f) for f in failing)})"
    return ""


def default_url(settings: Settings) -> str:
    """The local detailed health URL of a worker configured by ``settings``."""
    if settings.health_port == 0:
        raise ConfigError("PREVIEW_HEALTH_PORT=0: the health server is disabled, nothing to ask")
    host = settings.health_host
    if host in ("", "0.0.0.0"):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{settings.health_port}{HEALTH_PATH}"


def _cmd_healthcheck(args: argparse.Namespace) -> int:
    url: str | None = args.url
    if url is None:
        try:
            url = default_url(Settings.from_env())
        except ConfigError as exc:
            print(f"preview-worker healthcheck: {exc}", file=sys.stderr)
            return 2
    elif not url.startswith(("http://", "https://")):
        print(f"preview-worker healthcheck: --url must be http(s)://, got {url!r}", file=sys.stderr)
        return 2
    return healthcheck(url, timeout=args.timeout)


def _positive_float(raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {raw!r}") from None
    if not 0 < value <= 60:
        raise argparse.ArgumentTypeError(f"must be > 0 and <= 60, got {raw}")
    return value


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``healthcheck`` to the CLI's subcommands; its ``func(args)`` returns the exit code."""
    parser = sub.add_parser(
        "healthcheck",
        help="exit 0 when the local worker is healthy (for exec probes), 1 otherwise",
        description=(
            f"GET {HEALTH_PATH} of the worker on this host (127.0.0.1:PREVIEW_HEALTH_PORT). "
            "Exit 0 when it answers 200 (healthy, or draining on shutdown); exit 1 when it "
            "answers 503 (Redis unreachable or fetch loop stalled) or does not answer; "
            "exit 2 on a bad flag or environment value."
        ),
    )
    parser.add_argument("--url", help=f"ask this URL instead (default: local {HEALTH_PATH})")
    parser.add_argument(
        "--timeout", type=_positive_float, default=2.0, help="seconds to wait (default 2)"
    )
    parser.set_defaults(func=_cmd_healthcheck)
