"""The baseline: a minimal hand-written BLMOVE + LREM loop in redis-py, no queue library.

Producers LPUSH the job JSON; each of ``--concurrency`` tasks blocks on BLMOVE from the queue
list into a processing list, decodes the job, runs the handler and LREMs the element. It has
none of the guarantees of the real queues (no retries, leases, status): a floor for the cost
of two Redis round trips per job in Python.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Sequence
from typing import Any

import redis.asyncio as aioredis

from bench.common import (
    RoundTrips,
    WorkStats,
    job_payload,
    paced,
    ready,
    runner_main,
)


def keys(queue: str) -> tuple[str, str]:
    return f"bare:{queue}:wait", f"bare:{queue}:processing"


async def handler(payload: dict[str, Any]) -> dict[str, Any]:
    return {"handler": "noop", "rendered": False}


async def work(url: str, queue: str, n: int, concurrency: int) -> dict[str, Any]:
    trips = RoundTrips().install()
    stats = WorkStats(expected=n)
    wait, processing = keys(queue)
    client = aioredis.Redis.from_url(url)
    settled = 0
    all_settled = asyncio.Event()

    async def loop() -> None:
        nonlocal settled
        while True:
            element = await client.blmove(wait, processing, 0, "RIGHT", "LEFT")
            if element is None:  # only with a timeout, which this loop does not use
                continue
            payload = json.loads(element)
            stats.job_started(payload)
            await handler(payload)
            await client.lrem(processing, 1, element)  # type: ignore[arg-type]
            settled += 1
            if settled >= n:
                all_settled.set()

    await client.ping()
    ready()
    tasks = [asyncio.create_task(loop()) for _ in range(concurrency)]
    await all_settled.wait()  # every job removed; the loops now block in BLMOVE
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    stats.round_trips = trips.count
    result = stats.to_json()
    result["depths"] = {
        "waiting": int(await client.llen(wait)),
        "active": int(await client.llen(processing)),
    }
    await client.aclose()
    return result


async def enqueue(url: str, queue: str, ids: Sequence[str], batched: bool) -> dict[str, Any]:
    client = aioredis.Redis.from_url(url)
    wait, _ = keys(queue)
    bodies = [json.dumps(job_payload(job_id)) for job_id in ids]
    await client.ping()
    start = time.perf_counter()
    if batched:
        for i in range(0, len(bodies), 500):
            pipe = client.pipeline(transaction=False)
            for body in bodies[i : i + 500]:
                pipe.lpush(wait, body)
            await pipe.execute()
    else:
        for body in bodies:
            await client.lpush(wait, body)
    seconds = time.perf_counter() - start
    await client.aclose()
    return {"jobs": len(ids), "created": len(ids), "seconds": seconds}


async def produce(
    url: str, queue: str, ids: Sequence[str], rate: float, warmup: int
) -> dict[str, Any]:
    client = aioredis.Redis.from_url(url)
    wait, _ = keys(queue)

    async def send(i: int) -> None:
        body = json.dumps(job_payload(ids[i], t=time.time(), warmup=i < warmup))
        await client.lpush(wait, body)

    await client.ping()
    seconds = await paced(len(ids), rate, send)
    await client.aclose()
    return {"jobs": len(ids), "created": len(ids), "seconds": seconds}


def main(argv: Sequence[str] | None = None) -> None:
    runner_main(argv, work=work, enqueue=enqueue, produce=produce)


if __name__ == "__main__":
    main()
