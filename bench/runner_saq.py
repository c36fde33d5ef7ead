"""saq under benchmark (runs in ``.tools/bench-venv``, never in the project venv).

Jobs carry the preview-worker payload as the task's one keyword argument; the task notes its
start time like preview-worker's handler does. Worker settings are saq's defaults except
``concurrency``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any

from bench.common import (
    RoundTrips,
    WorkStats,
    job_payload,
    paced,
    ready,
    runner_main,
)

STATS = WorkStats(expected=0)
FINISHED = {"jobs": 0}
ALL_FINISHED = asyncio.Event()


async def noop(ctx: dict[str, Any], *, payload: dict[str, Any]) -> dict[str, Any]:
    STATS.job_started(payload)
    return {"handler": "noop", "rendered": False}


async def after_process(ctx: dict[str, Any]) -> None:
    """saq calls this once a job's final status is written."""
    FINISHED["jobs"] += 1
    if FINISHED["jobs"] >= STATS.expected:
        ALL_FINISHED.set()


def make_queue(url: str, name: str) -> Any:
    from saq import Queue  # type: ignore[import-not-found, unused-ignore]

    return Queue.from_url(url, name=name)


async def work(url: str, queue_name: str, n: int, concurrency: int) -> dict[str, Any]:
    from saq import Worker  # type: ignore[import-not-found, unused-ignore]

    trips = RoundTrips().install()
    STATS.expected = n
    queue = make_queue(url, queue_name)
    await queue.connect()
    worker = Worker(queue, functions=[noop], concurrency=concurrency, after_process=after_process)
    worker.SIGNALS = []  # the runner stops the worker itself
    ready()
    run = asyncio.create_task(worker.start())
    done = asyncio.create_task(ALL_FINISHED.wait())
    await asyncio.wait({run, done}, return_when=asyncio.FIRST_COMPLETED)
    await worker.stop()
    done.cancel()
    await run
    STATS.round_trips = trips.count
    result = STATS.to_json()
    info = await queue.info()
    result["outcomes"] = {"completed": queue.complete, "failed": queue.failed}
    result["depths"] = {"waiting": info.get("queued", 0), "active": info.get("active", 0)}
    await queue.disconnect()
    return result


async def enqueue(url: str, queue_name: str, ids: Sequence[str], batched: bool) -> dict[str, Any]:
    queue = make_queue(url, queue_name)
    await queue.connect()
    payloads = [job_payload(job_id) for job_id in ids]
    start = time.perf_counter()
    if batched:
        # saq has no bulk enqueue: overlap calls (saq itself caps them at 20 in flight)
        jobs = await asyncio.gather(
            *(queue.enqueue("noop", key=p["jobId"], payload=p) for p in payloads)
        )
        created = sum(1 for job in jobs if job is not None)
    else:
        created = 0
        for p in payloads:
            created += (await queue.enqueue("noop", key=p["jobId"], payload=p)) is not None
    seconds = time.perf_counter() - start
    await queue.disconnect()
    return {"jobs": len(ids), "created": created, "seconds": seconds}


async def produce(
    url: str, queue_name: str, ids: Sequence[str], rate: float, warmup: int
) -> dict[str, Any]:
    queue = make_queue(url, queue_name)
    await queue.connect()
    created = 0

    async def send(i: int) -> None:
        nonlocal created
        p = job_payload(ids[i], t=time.time(), warmup=i < warmup)
        created += (await queue.enqueue("noop", key=p["jobId"], payload=p)) is not None

    seconds = await paced(len(ids), rate, send)
    await queue.disconnect()
    return {"jobs": len(ids), "created": created, "seconds": seconds}


def main(argv: Sequence[str] | None = None) -> None:
    runner_main(argv, work=work, enqueue=enqueue, produce=produce)


if __name__ == "__main__":
    main()
