"""Prometheus metrics. Names are fixed once shipped; ``docs/metrics.md`` documents each series.

Every series carries ``queue`` and ``track`` labels so a canary release can be compared with
stable. One :class:`Metrics` object per worker, on its own registry.
"""

from __future__ import annotations

import time

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
)

from . import __version__

# ``*_created`` series double the series count and no rule or panel uses them.
disable_created_metrics()  # type: ignore[no-untyped-call]

OUTCOMES = ("completed", "failed", "retried", "dead", "invalid", "dryrun")
STATES = ("waiting", "active", "delayed", "completed", "failed", "dead")
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300)


class Metrics:
    def __init__(self, *, queue: str, track: str, registry: CollectorRegistry | None = None):
        self.registry = registry if registry is not None else CollectorRegistry()
        self.queue = queue
        self.track = track
        labels = ("queue", "track")
        r = self.registry
        self.jobs = Counter(
            "preview_jobs_total", "Jobs settled, by outcome.", (*labels, "outcome"), registry=r
        )
        self.dryrun = Counter(
            "preview_jobs_dryrun",
            "Dry-run jobs short-circuited before any handler.",
            labels,
            registry=r,
        )
        self.duration = Histogram(
            "preview_job_duration_seconds",
            "Handler run time of one attempt.",
            labels,
            buckets=DURATION_BUCKETS,
            registry=r,
        )
        self.in_flight = Gauge(
            "preview_jobs_in_flight", "Jobs this worker is running now.", labels, registry=r
        )
        self.depth = Gauge(
            "preview_queue_depth",
            "Jobs per state, read from Redis on a timer.",
            (*labels, "state"),
            registry=r,
        )
        self.recovered = Counter(
            "preview_jobs_recovered",
            "Jobs taken back from dead owners by this worker's reaper.",
            labels,
            registry=r,
        )
        self.redis_errors = Counter(
            "preview_redis_errors", "Failed Redis calls (each one retried).", labels, registry=r
        )
        self.fenced = Counter(
            "preview_jobs_fenced",
            "Settlements refused because this worker lost ownership.",
            labels,
            registry=r,
        )
        self.info = Gauge(
            "preview_worker_info",
            "Constant 1, labelled with the worker's version and track.",
            (*labels, "version"),
            registry=r,
        )
        self.last_poll = Gauge(
            "preview_worker_last_poll_timestamp_seconds",
            "Unix time the fetch loop last polled Redis.",
            labels,
            registry=r,
        )
        self.info.labels(queue, track, __version__).set(1)
        self._l = (queue, track)
        # labelled children resolved once: the per-job path does no label lookups
        self._jobs = {outcome: self.jobs.labels(*self._l, outcome) for outcome in OUTCOMES}
        self._dryrun = self.dryrun.labels(*self._l)
        self._duration = self.duration.labels(*self._l)
        self._in_flight = self.in_flight.labels(*self._l)
        self._last_poll = self.last_poll.labels(*self._l)
        # Depth series appear only after the first refresh from Redis: a pre-set 0 would jump
        # to the real value at start and look like dead-letter growth to the alert rules.
        self.depths: dict[str, int] = {}
        """Last depths read from Redis (empty before the first refresh)."""
        self.depths_refreshed_at: float | None = None
        """Unix time of the last depth refresh; None before the first."""
        for metric in (self.recovered, self.redis_errors, self.fenced):
            metric.labels(*self._l)

    def job(self, outcome: str, n: int = 1) -> None:
        child = self._jobs.get(outcome)
        if child is None:
            child = self._jobs[outcome] = self.jobs.labels(*self._l, outcome)
        child.inc(n)
        if outcome == "dryrun":
            self._dryrun.inc(n)

    def observe_duration(self, seconds: float) -> None:
        self._duration.observe(seconds)

    def set_in_flight(self, n: int) -> None:
        self._in_flight.set(n)

    def set_depths(self, depths: dict[str, int]) -> None:
        for state, value in depths.items():
            self.depth.labels(*self._l, state).set(value)
        self.depths = {**self.depths, **depths}
        self.depths_refreshed_at = time.time()

    def add_recovered(self, n: int) -> None:
        self.recovered.labels(*self._l).inc(n)

    def redis_error(self) -> None:
        self.redis_errors.labels(*self._l).inc()

    def add_fenced(self, n: int = 1) -> None:
        self.fenced.labels(*self._l).inc(n)

    def polled(self, unix_time: float) -> None:
        self._last_poll.set(unix_time)
