"""What the health app needs from a running worker (implemented by ``app.worker.Worker``)."""

from __future__ import annotations

from typing import Protocol

from .metrics import Metrics


class WorkerStatus(Protocol):
    worker_id: str
    track: str
    concurrency: int
    metrics: Metrics

    def in_flight(self) -> int: ...

    def seconds_since_poll(self) -> float | None:
        """Seconds since the fetch loop last polled Redis; None before the first poll."""

    def fetch_loop_alive(self) -> bool:
        """False once the fetch loop task has died or not started."""

    def uptime_seconds(self) -> float: ...

    def draining(self) -> bool:
        """True once shutdown began (readiness must answer 503)."""

    async def redis_ping_ms(self) -> float:
        """Round trip of a PING in ms; raises on any Redis failure."""

    async def queue_depths(self) -> dict[str, int]:
        """Jobs per state: waiting, active, delayed, completed, failed, dead."""
