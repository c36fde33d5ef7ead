"""arq under benchmark (runs in ``.tools/bench-venv``, never in the project venv).

arq has no blocking fetch: a worker polls its queue every ``poll_delay`` (default 0.5 s, which
caps a worker at ``queue_read_limit`` jobs per poll and adds ~250 ms of mean latency). The bench
passes ``--option poll_delay=S`` and prints the value it used. Other settings are arq's defaults
except ``max_jobs`` (the concurrency).
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


async def noop(ctx: dict[str, Any], payload: dict[str, Any]) -> dict[str, Any]:
    STATS.job_started(payload)
    return {"handler": "noop", "rendered": False}


async def after_job_end(ctx: dict[str, Any]) -> None:
    """arq calls this once a job's result is recorded."""
    FINISHED["jobs"] += 1
    if FINISHED["jobs"] >= STATS.expected:
        ALL_FINISHED.set()


def settings(url: str) -> Any:
    from arq.connections import RedisSettings  # type: ignore[import-not-found, unused-ignore]

    return RedisSettings.from_dsn(url)


async def work(
    url: str, queue: str, n: int, concurrency: int, poll_delay: str = "0.5"
) -> dict[str, Any]:
    from arq.worker import Worker, func  # type: ignore[import-not-found, unused-ignore]

    trips = RoundTrips().install()
    STATS.expected = n
    worker = Worker(
        functions=[func(noop, name="noop")],
        queue_name=f"arq:{queue}",
        redis_settings=settings(url),
        max_jobs=concurrency,
        poll_delay=float(poll_delay),
        handle_signals=False,
        after_job_end=after_job_end,
    )
    ready()
    run = asyncio.create_task(worker.async_run())
    done = asyncio.create_task(ALL_FINISHED.wait())
    await asyncio.wait({run, done}, return_when=asyncio.FIRST_COMPLETED)
    pool = worker.pool
    waiting = int(await pool.zcard(f"arq:{queue}"))
    completed, failed = worker.jobs_complete, worker.jobs_failed
    await worker.close()
    run.cancel()
    await asyncio.gather(run, return_exceptions=True)
    done.cancel()
    STATS.round_trips = trips.count
    result = STATS.to_json()
    result["outcomes"] = {"completed": completed, "failed": failed}
    result["depths"] = {"waiting": waiting}
    return result


async def enqueue(url: str, queue: str, ids: Sequence[str], batched: bool) -> dict[str, Any]:
    from arq import create_pool  # type: ignore[import-not-found, unused-ignore]

    pool = await create_pool(settings(url), default_queue_name=f"arq:{queue}")
    payloads = [job_payload(job_id) for job_id in ids]
    start = time.perf_counter()
    if batched:
        # arq has no bulk enqueue: overlap calls, 100 in flight
        created = 0
        for i in range(0, len(payloads), 100):
            jobs = await asyncio.gather(
                *(pool.enqueue_job("noop", p, _job_id=p["jobId"]) for p in payloads[i : i + 100])
            )
            created += sum(1 for job in jobs if job is not None)
    else:
        created = 0
        for p in payloads:
            created += (await pool.enqueue_job("noop", p, _job_id=p["jobId"])) is not None
    seconds = time.perf_counter() - start
    await pool.aclose()
    return {"jobs": len(ids), "created": created, "seconds": seconds}


async def produce(
    url: str, queue: str, ids: Sequence[str], rate: float, warmup: int
) -> dict[str, Any]:
    from arq import create_pool  # type: ignore[import-not-found, unused-ignore]

    pool = await create_pool(settings(url), default_queue_name=f"arq:{queue}")
    created = 0

    async def send(i: int) -> None:
        nonlocal created
        p = job_payload(ids[i], t=time.time(), warmup=i < warmup)
        created += (await pool.enqueue_job("noop", p, _job_id=p["jobId"])) is not None

    seconds = await paced(len(ids), rate, send)
    await pool.aclose()
    return {"jobs": len(ids), "created": created, "seconds": seconds}


def main(argv: Sequence[str] | None = None) -> None:
    runner_main(argv, work=work, enqueue=enqueue, produce=produce)


if __name__ == "__main__":
    main()
