"""Shared by the orchestrator and every runner; standard library only, because the saq and arq
runners import it from the separate benchmark venv.

A runner is a subprocess. It prints ``READY`` once it is about to consume, and its result as one
line ``RESULT {json}`` at the end. The job body is the same for every system: a preview-worker
job payload whose ``previewRequest.metadata`` carries the enqueue timestamp ``t`` (Unix seconds,
read just before the enqueue call) and ``warmup`` (excluded from latency figures).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import math
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

RESULT_PREFIX = "RESULT "
READY = "READY"


def job_payload(job_id: str, *, t: float | None = None, warmup: bool = False) -> dict[str, Any]:
    """A valid, non-dry-run preview-worker job (the noop handler runs it)."""
    request: dict[str, Any] = {"steps": [], "assets": [], "audio": {}}
    if t is not None:
        request["metadata"] = {"t": t, "warmup": warmup}
    return {
        "jobId": job_id,
        "projectId": "bench",
        "requestId": job_id,
        "dryRun": False,
        "previewRequest": request,
    }


def enqueue_time(payload: dict[str, Any]) -> tuple[float | None, bool]:
    """(enqueue timestamp, warm-up flag) of a payload made by :func:`job_payload`."""
    meta = payload.get("previewRequest", {}).get("metadata") or {}
    t = meta.get("t")
    return (float(t) if t is not None else None), bool(meta.get("warmup", False))


@dataclass
class WorkStats:
    """What a consuming runner observed; filled by :meth:`job_started` from the handler."""

    expected: int
    count: int = 0
    first_start: float = 0.0
    last_start: float = 0.0
    latencies_ms: list[float] = field(default_factory=list)
    warmup_jobs: int = 0
    duplicates: int = 0
    """Handler runs of a job id that had already run (a queue delivering a job twice)."""
    round_trips: int = 0
    calls: dict[str, int] = field(default_factory=dict)
    done: asyncio.Event = field(default_factory=asyncio.Event)
    seen: set[str] = field(default_factory=set)

    def job_started(self, payload: dict[str, Any]) -> None:
        now = time.time()
        t, warmup = enqueue_time(payload)
        if t is not None:
            if warmup:
                self.warmup_jobs += 1
            else:
                self.latencies_ms.append((now - t) * 1000)
        job_id = str(payload.get("jobId", self.count))
        if job_id in self.seen:
            self.duplicates += 1
        self.seen.add(job_id)
        self.count += 1
        if self.count == 1:
            self.first_start = now
        self.last_start = now
        if len(self.seen) >= self.expected:
            self.done.set()

    def to_json(self) -> dict[str, Any]:
        data = {
            f.name: getattr(self, f.name) for f in fields(self) if f.name not in ("done", "seen")
        }
        rate = 0.0
        if self.count > 1 and self.last_start > self.first_start:
            rate = (self.count - 1) / (self.last_start - self.first_start)
        data["jobs_per_second"] = rate
        return data


class RoundTrips:
    """Counts client->Redis writes: one per command, one per pipeline (a round trip each)."""

    def __init__(self) -> None:
        self.count = 0

    def install(self) -> RoundTrips:
        from redis.asyncio.connection import AbstractConnection

        original = AbstractConnection.send_packed_command
        counter = self

        async def counted(self: Any, command: Any, check_health: bool = True) -> None:
            counter.count += 1
            await original(self, command, check_health)

        AbstractConnection.send_packed_command = counted  # type: ignore[method-assign]
        return self


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100); NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


async def paced(n: int, rate: float, send: Callable[[int], Awaitable[None]]) -> float:
    """Call ``send(i)`` for i in 0..n-1 at ``rate`` per second (a fixed schedule, not a fixed
    gap: a late call does not push back the next ones). Returns the elapsed seconds."""
    start = time.monotonic()
    for i in range(n):
        due = start + i / rate
        delay = due - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        await send(i)
    return time.monotonic() - start


def runner_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Arguments every runner takes: ``MODE --url URL [--n N] ...``.

    Modes: ``enqueue`` (``--batched`` or one call per job), ``work`` (consume ``--n`` jobs at
    ``--concurrency``), ``produce`` (``--n`` jobs at ``--rate`` per second, the first
    ``--warmup`` flagged as warm-up).
    """
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=("enqueue", "work", "produce"))
    parser.add_argument("--url", required=True)
    parser.add_argument("--queue", default="bench")
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--batched", action="store_true")
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--warmup", type=int, default=0)
    parser.add_argument("--prefix", default="j")
    parser.add_argument("--option", action="append", default=[], help="KEY=VALUE, per runner")
    return parser.parse_args(argv)


def options(args: argparse.Namespace) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in args.option:
        key, _, value = item.partition("=")
        out[key] = value
    return out


def emit(result: dict[str, Any]) -> None:
    sys.stdout.write(RESULT_PREFIX + json.dumps(result) + "\n")
    sys.stdout.flush()


def ready() -> None:
    sys.stdout.write(READY + "\n")
    sys.stdout.flush()


def quiet_logging() -> None:
    """No per-job log lines in any system: the bench measures the queue, not the log sink."""
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)


Work = Callable[..., Awaitable[dict[str, Any]]]
Enqueue = Callable[[str, str, Sequence[str], bool], Awaitable[dict[str, Any]]]
Produce = Callable[[str, str, Sequence[str], float, int], Awaitable[dict[str, Any]]]


def runner_main(
    argv: Sequence[str] | None, *, work: Work, enqueue: Enqueue, produce: Produce
) -> None:
    """The entry point every runner shares: parse, run the asked mode, print the JSON result.
    ``work(url, queue, n, concurrency, **options)`` also gets the ``--option`` pairs."""
    args = runner_args(argv)
    quiet_logging()

    async def run() -> dict[str, Any]:
        ids = [f"{args.prefix}{i}" for i in range(args.n)]
        if args.mode == "work":
            return await work(args.url, args.queue, args.n, args.concurrency, **options(args))
        if args.mode == "enqueue":
            return await enqueue(args.url, args.queue, ids, args.batched)
        return await produce(args.url, args.queue, ids, args.rate, args.warmup)

    emit(asyncio.run(run()))
