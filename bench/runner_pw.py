"""preview-worker under benchmark: enqueue, produce at a paced rate, or consume with a Worker.

Run by ``bench.queue_bench`` in a subprocess of the project venv (pinned to its own CPU)::

    python -m bench.runner_pw work --url redis://... --n 20000 --concurrency 64
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

import redis.asyncio as aioredis

from app.handlers import JobContext, NoopHandler
from app.queue import Queue
from app.settings import Settings
from app.worker import Worker
from bench.common import (
    RoundTrips,
    WorkStats,
    job_payload,
    paced,
    ready,
    runner_main,
)


class TimingHandler:
    """The noop handler, plus a note of when each job started (from inside the handler)."""

    def __init__(self, inner: NoopHandler, stats: WorkStats) -> None:
        self.inner = inner
        self.stats = stats

    async def __call__(self, ctx: JobContext) -> Mapping[str, Any]:
        request = ctx.job.preview_request
        self.stats.job_started(
            {"jobId": ctx.job.job_id, "previewRequest": {"metadata": request.metadata}}
        )
        return await self.inner(ctx)


def settings_for(url: str, queue: str, concurrency: int) -> Settings:
    return Settings.from_env(
        {},
        redis_url=url,
        queue=queue,
        health_port=0,
        concurrency=concurrency,
        default_handler="noop",
        queue_max=0,
    )


def count_calls(queue: Queue, calls: dict[str, int]) -> None:
    """Wrap every public coroutine method of the queue so each call is counted by name (each
    is one Redis round trip: one script, command or pipeline)."""
    for name in dir(queue):
        method = getattr(queue, name)
        if name.startswith("_") or not inspect.iscoroutinefunction(method):
            continue

        @functools.wraps(method)
        async def counted(
            *args: Any,
            _name: str = name,
            _method: Callable[..., Awaitable[Any]] = method,
            **kw: Any,
        ) -> Any:
            calls[_name] = calls.get(_name, 0) + 1
            return await _method(*args, **kw)

        setattr(queue, name, counted)


async def work(url: str, queue: str, n: int, concurrency: int) -> dict[str, Any]:
    """Consume ``n`` jobs with one Worker at ``concurrency``; stop once all are settled."""
    trips = RoundTrips().install()
    stats = WorkStats(expected=n)
    settings = settings_for(url, queue, concurrency)
    handler = TimingHandler(NoopHandler(settings), stats)
    worker = Worker(settings=settings, handlers={"noop": handler})
    count_calls(worker.queue, stats.calls)
    ready()
    run = asyncio.create_task(worker.run(install_signals=False))
    done = asyncio.create_task(stats.done.wait())
    await asyncio.wait({run, done}, return_when=asyncio.FIRST_COMPLETED)
    worker.request_shutdown()  # drain: the last jobs settle, then the worker releases its lease
    await run
    done.cancel()
    stats.round_trips = trips.count
    result = stats.to_json()
    labels = {"queue": queue, "track": settings.track}
    registry = worker.metrics.registry
    result["outcomes"] = {
        outcome: registry.get_sample_value("preview_jobs_total", {**labels, "outcome": outcome})
        for outcome in ("completed", "failed", "dead", "invalid")
    }
    client = aioredis.Redis.from_url(url)
    try:
        result["depths"] = await Queue(client, name=queue).stats()
    finally:
        await client.aclose()
    return result


async def enqueue(url: str, queue: str, ids: Sequence[str], batched: bool) -> dict[str, Any]:
    """Enqueue one job per id: pipelined ``enqueue_many`` or one ``enqueue`` call per job."""
    client = aioredis.Redis.from_url(url)
    q = Queue(client, name=queue, queue_max=0)
    payloads = [job_payload(job_id) for job_id in ids]
    try:
        await client.ping()
        start = time.perf_counter()
        if batched:
            results = await q.enqueue_many(payloads)
            created = sum(1 for r in results if getattr(r, "created", False))
        else:
            created = 0
            for payload in payloads:
                created += (await q.enqueue(payload)).created
        seconds = time.perf_counter() - start
    finally:
        await client.aclose()
    return {"jobs": len(ids), "created": created, "seconds": seconds}


async def produce(
    url: str, queue: str, ids: Sequence[str], rate: float, warmup: int
) -> dict[str, Any]:
    """Enqueue one job per id at ``rate`` per second, stamping each just before its call."""
    client = aioredis.Redis.from_url(url)
    q = Queue(client, name=queue, queue_max=0)
    created = 0

    async def send(i: int) -> None:
        nonlocal created
        payload = job_payload(ids[i], t=time.time(), warmup=i < warmup)
        created += (await q.enqueue(payload)).created

    try:
        await client.ping()
        seconds = await paced(len(ids), rate, send)
    finally:
        await client.aclose()
    return {"jobs": len(ids), "created": created, "seconds": seconds}


def main(argv: Sequence[str] | None = None) -> None:
    runner_main(argv, work=work, enqueue=enqueue, produce=produce)


if __name__ == "__main__":
    main()
