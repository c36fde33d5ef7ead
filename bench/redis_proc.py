"""A throw-away redis-server for the bench (no persistence), and what we read from it."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

import redis

from app.embedded_redis import free_port, start_redis_server, stop_process


class BenchRedis:
    """``redis-server --save "" --appendonly no`` on a free port, optionally under ``taskset``."""

    def __init__(self, *, pin: Sequence[str] = ()) -> None:
        self.port = free_port()
        self.pin = list(pin)
        self.proc: subprocess.Popen[bytes] | None = None
        self.workdir = Path(tempfile.mkdtemp(prefix="bench-redis-"))

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> BenchRedis:
        options = ["--save", "", "--appendonly", "no"]
        self.proc = start_redis_server(self.port, self.workdir, options, prefix=self.pin)
        return self

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)
        self.proc = None
        shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> BenchRedis:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


class Probe:
    """Reads ``INFO commandstats`` and Redis CPU time, to take deltas around a phase."""

    def __init__(self, url: str) -> None:
        self.client = redis.Redis.from_url(url)

    def commands(self) -> dict[str, int]:
        """Calls per command (upper case) that ran without error (an EVALSHA refused with
        NOSCRIPT is left out). Commands run inside a script are counted too."""
        info = self.client.info("commandstats")
        out: dict[str, int] = {}
        for key, value in info.items():
            name = key.removeprefix("cmdstat_").upper()
            out[name] = int(value["calls"]) - int(value.get("failed_calls", 0))
        return out

    def cpu_seconds(self) -> float:
        info = self.client.info("cpu")
        return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])

    def flush(self) -> None:
        self.client.flushall()
        self.client.script_flush()

    def close(self) -> None:
        self.client.close()


def delta(after: dict[str, int], before: dict[str, int]) -> dict[str, int]:
    return {k: v - before.get(k, 0) for k, v in after.items() if v - before.get(k, 0)}
