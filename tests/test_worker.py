from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import msgspec
import pytest
import redis.asyncio as aioredis

from app.errors import PermanentJobError
from app.handlers import Handler, JobContext, NoopHandler
from app.queue import JobOptions, Queue, Settlement
from app.settings import Settings
from app.worker import Worker
from tests.jobs import job
from tests.redis_server import RedisServer


def settings_for(server: RedisServer, **overrides: Any) -> Settings:
    base: dict[str, Any] = {
        "redis_url": server.url,
        "queue": "q",
        "health_port": 0,
        "concurrency": 2,
        "default_handler": "test",
        "backoff_seconds": 0.01,
        "backoff_max_seconds": 0.2,
        "attempts": 3,
        "reaper_interval_seconds": 0.2,
    }
    base.update(overrides)
    return Settings.from_env({}, **base)


class Recorder:
    def __init__(self, fail: BaseException | None = None, sleep: float = 0) -> None:
        self.calls: list[tuple[str, int]] = []
        self.fail = fail
        self.sleep = sleep

    async def __call__(self, ctx: JobContext) -> Mapping[str, Any]:
        self.calls.append((ctx.job.job_id, ctx.attempt))
        if self.sleep:
            await asyncio.sleep(self.sleep)
        if self.fail is not None:
            raise self.fail
        return {"ok": True, "job": ctx.job.job_id}


async def run_burst(settings: Settings, handlers: Mapping[str, Handler]) -> Worker:
    worker = Worker(settings=settings, handlers=handlers)
    async with asyncio.timeout(60):
        await worker.run(burst=True, install_signals=False)
    return worker


def counter(worker: Worker, outcome: str) -> float:
    value = worker.metrics.registry.get_sample_value(
        "preview_jobs_total", {"queue": "q", "track": "stable", "outcome": outcome}
    )
    return value or 0.0


@pytest.fixture
def queue(redis_client: aioredis.Redis) -> Queue:
    return Queue(redis_client, name="q", defaults=JobOptions(attempts=3, backoff_seconds=0.01))


async def test_completes_jobs_and_records_results(redis_server: RedisServer, queue: Queue) -> None:
    for i in range(5):
        await queue.enqueue(job(f"j{i}"))
    handler = Recorder()
    worker = await run_burst(settings_for(redis_server), {"test": handler})
    assert sorted(handler.calls) == [(f"j{i}", 1) for i in range(5)]
    status = await queue.status("j3")
    assert status is not None
    assert (status.state, status.result) == ("completed", {"ok": True, "job": "j3"})
    assert counter(worker, "completed") == 5
    assert (await queue.stats())["completed"] == 5


async def test_poison_job_dead_letters_after_n_attempts_with_growing_delays(
    redis_server: RedisServer, queue: Queue, monkeypatch: pytest.MonkeyPatch
) -> None:
    delays: list[int] = []
    real_settle = Queue.settle

    async def spy(self: Queue, owner: str, token: str, items: list[Settlement]) -> list[int]:
        delays.extend(int(i.a) for i in items if i.action == "retry")
        return await real_settle(self, owner, token, items)

    monkeypatch.setattr(Queue, "settle", spy)
    await queue.enqueue(job("poison"), options=JobOptions(attempts=4, backoff_seconds=0.02))
    handler = Recorder(fail=RuntimeError("kaboom"))
    worker = await run_burst(settings_for(redis_server), {"test": handler})
    assert handler.calls == [("poison", 1), ("poison", 2), ("poison", 3), ("poison", 4)]
    assert len(delays) == 3
    assert delays == sorted(delays)
    assert delays[-1] > delays[0]
    [(_, entry)] = await queue.dlq_entries()
    assert (entry.jobId, entry.reason, entry.attempts) == ("poison", "error", 4)
    assert "kaboom" in entry.error
    assert entry.payload is not None
    assert msgspec.json.decode(entry.payload)["jobId"] == "poison"
    status = await queue.status("poison")
    assert status is not None
    assert (status.state, status.reason) == ("dead", "error")
    assert (counter(worker, "failed"), counter(worker, "retried"), counter(worker, "dead")) == (
        4,
        3,
        1,
    )


async def test_raw_undecodable_bytes_dead_letter_and_worker_keeps_serving(
    redis_server: RedisServer, queue: Queue, redis_client: aioredis.Redis
) -> None:
    await redis_client.lpush(queue.keys.wait("normal"), b"\xff\xfe\x00garbage")
    await queue.enqueue(job("after"))
    handler = Recorder()
    worker = await run_burst(settings_for(redis_server), {"test": handler})
    [(_, entry)] = await queue.dlq_entries()
    assert entry.reason == "undecodable"
    assert entry.payloadBase64 is not None
    assert handler.calls == [("after", 1)]
    assert counter(worker, "invalid") == 1
    stats = await queue.stats()
    assert (stats["active"], stats["waiting"], stats["dead"]) == (0, 0, 1)


async def test_invalid_payload_from_a_foreign_producer_is_not_retried(
    redis_server: RedisServer, queue: Queue, redis_client: aioredis.Redis
) -> None:
    # a producer that calls enqueue.lua itself, skipping validation
    bad = job("bad")
    bad["previewRequest"]["steps"] = [{"durationSeconds": "long"}]
    data = msgspec.json.encode(bad)
    good = await queue.enqueue(job("x"))  # gives us the key layout
    assert good.created
    parsed = queue._prepare(job("bad"))[0]
    keys, args = queue._enqueue_args(parsed, data, queue.defaults, 0)
    assert (await queue._enqueue(keys=keys, args=args))[0] == b"created"
    handler = Recorder()
    worker = await run_burst(settings_for(redis_server), {"test": handler})
    assert handler.calls == [("x", 1)]
    status = await queue.status("bad")
    assert status is not None
    assert (status.state, status.reason, status.attempts) == ("dead", "invalid_payload", 1)
    assert status.lastError is not None
    assert "$.previewRequest.steps[0].durationSeconds" in status.lastError
    assert counter(worker, "invalid") == 1


async def test_dry_run_never_reaches_a_handler_and_is_counted(
    redis_server: RedisServer, queue: Queue
) -> None:
    await queue.enqueue(job("dry", dry_run=True))
    handler = Recorder()
    worker = await run_burst(settings_for(redis_server), {"test": handler})
    assert handler.calls == []
    status = await queue.status("dry")
    assert status is not None
    assert (status.state, status.result) == ("completed", {"dryRun": True, "rendered": False})
    assert counter(worker, "dryrun") == 1
    assert (
        worker.metrics.registry.get_sample_value(
            "preview_jobs_dryrun_total", {"queue": "q", "track": "stable"}
        )
        == 1
    )


async def test_unknown_handler_dead_letters_at_once(
    redis_server: RedisServer, queue: Queue
) -> None:
    await queue.enqueue(job("j", options={"renderer": "nope"}))
    await run_burst(settings_for(redis_server), {"test": Recorder()})
    [(_, entry)] = await queue.dlq_entries()
    assert (entry.reason, entry.attempts) == ("unknown_handler", 1)
    assert "'nope'" in entry.error


async def test_noop_handler_runs_only_when_asked(redis_server: RedisServer, queue: Queue) -> None:
    await queue.enqueue(job("j", options={"renderer": "noop"}))
    settings = settings_for(redis_server)
    await run_burst(settings, {"test": Recorder(), "noop": NoopHandler(settings)})
    status = await queue.status("j")
    assert status is not None
    assert status.result == {"handler": "noop", "rendered": False}


async def test_permanent_error_skips_retries(redis_server: RedisServer, queue: Queue) -> None:
    await queue.enqueue(job("j"))
    handler = Recorder(fail=PermanentJobError("asset_missing", "asset 'board' not found"))
    await run_burst(settings_for(redis_server), {"test": handler})
    assert handler.calls == [("j", 1)]
    [(_, entry)] = await queue.dlq_entries()
    assert (entry.reason, entry.error) == ("asset_missing", "asset 'board' not found")


async def test_timeout_fails_the_attempt_with_reason_timeout(
    redis_server: RedisServer, queue: Queue
) -> None:
    await queue.enqueue(job("slow"), options=JobOptions(attempts=2, backoff_seconds=0.01))
    handler = Recorder(sleep=30)
    await run_burst(settings_for(redis_server, job_timeout_seconds=0.1), {"test": handler})
    assert handler.calls == [("slow", 1), ("slow", 2)]
    [(_, entry)] = await queue.dlq_entries()
    assert (entry.reason, entry.attempts) == ("timeout", 2)


async def test_lease_is_renewed_during_a_long_job(redis_server: RedisServer, queue: Queue) -> None:
    # the job runs for several lease periods; renewal keeps ownership, so it completes
    await queue.enqueue(job("long"))
    handler = Recorder(sleep=1.0)
    worker = await run_burst(settings_for(redis_server, lease_seconds=1.0), {"test": handler})
    status = await queue.status("long")
    assert status is not None
    assert (status.state, status.recovered) == ("completed", 0)
    assert (
        worker.metrics.registry.get_sample_value(
            "preview_jobs_fenced_total", {"queue": "q", "track": "stable"}
        )
        == 0
    )


async def test_concurrency_limits_jobs_in_flight(redis_server: RedisServer, queue: Queue) -> None:
    running = 0
    peak = 0

    async def handler(ctx: JobContext) -> Mapping[str, Any]:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.02)
        running -= 1
        return {}

    for i in range(12):
        await queue.enqueue(job(f"j{i}"))
    await run_burst(settings_for(redis_server, concurrency=3), {"test": handler})
    assert peak == 3
    assert (await queue.stats())["completed"] == 12
