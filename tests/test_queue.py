from __future__ import annotations

import random

import pytest
import redis.asyncio as aioredis

from app.errors import PayloadError, QueueFullError
from app.queue import (
    JobOptions,
    Queue,
    Retention,
    Settlement,
    TakenJob,
    backoff_delay,
    dead_letter_entry,
)
from tests.jobs import job, wait_for
from tests.redis_server import RedisServer

LEASE_MS = 30_000


def _entry(queue: Queue, held: TakenJob) -> bytes:
    return dead_letter_entry(
        queue=queue.name,
        job=held,
        job_id=held.id,
        reason="asset_missing",
        error="asset x",
        worker="w",
    )


@pytest.fixture
def queue(redis_client: aioredis.Redis) -> Queue:
    return Queue(redis_client, name="q", max_payload_bytes=4096, queue_max=0)


async def test_enqueue_is_idempotent_on_job_id(queue: Queue) -> None:
    first = await queue.enqueue(job("a"))
    again = await queue.enqueue(job("a"))
    assert first.created and first.state == "waiting"
    assert not again.created and again.state == "waiting"
    assert (await queue.stats())["waiting"] == 1


async def test_duplicate_of_a_retained_completed_job_adds_nothing(queue: Queue) -> None:
    await queue.enqueue(job("a"))
    await queue.register("w", "t", LEASE_MS)
    taken = await queue.take("w", "t", 1, LEASE_MS)
    assert await queue.settle("w", "t", [Settlement(taken.jobs[0].element, "complete", b"{}")]) == [
        True
    ]
    again = await queue.enqueue(job("a"))
    assert (again.created, again.state) == (False, "completed")
    assert (await queue.stats())["waiting"] == 0


async def test_strict_priority_then_fifo(queue: Queue) -> None:
    for job_id, prio in [
        ("l1", "low"),
        ("n1", "normal"),
        ("h1", "high"),
        ("n2", None),
        ("h2", "high"),
    ]:
        await queue.enqueue(job(job_id, priority=prio))
    await queue.register("w", "t", LEASE_MS)
    taken = await queue.take("w", "t", 10, LEASE_MS)
    assert [j.id for j in taken.jobs] == ["h1", "h2", "n1", "n2", "l1"]
    assert [j.priority for j in taken.jobs] == ["high", "high", "normal", "normal", "low"]


async def test_queue_max_refuses_with_a_clear_error(redis_client: aioredis.Redis) -> None:
    queue = Queue(redis_client, name="q", queue_max=2)
    await queue.enqueue(job("a"))
    await queue.enqueue(job("b"))
    with pytest.raises(QueueFullError, match="queue is full"):
        await queue.enqueue(job("c"))
    assert (await queue.stats())["waiting"] == 2
    # a duplicate of a queued job is still answered, not refused
    assert not (await queue.enqueue(job("a"))).created


async def test_oversized_payload_refused_before_decoding(queue: Queue) -> None:
    with pytest.raises(PayloadError) as err:
        await queue.enqueue(b"{" + b" " * 5000 + b"not json")
    assert err.value.reason == "payload_too_large"


async def test_invalid_payload_refused_with_path(queue: Queue) -> None:
    bad = job("a")
    bad["priority"] = "urgent"
    with pytest.raises(PayloadError) as err:
        await queue.enqueue(bad)
    assert (err.value.reason, err.value.path) == ("invalid_payload", "$.priority")
    assert (await queue.stats())["waiting"] == 0


async def test_batch_enqueue_reports_each_item(queue: Queue) -> None:
    results = await queue.enqueue_many([job("a"), b"nope", job("b"), job("a")])
    assert [getattr(r, "created", None) for r in results] == [True, None, True, False]
    assert isinstance(results[1], PayloadError) and results[1].reason == "undecodable"
    assert (await queue.stats())["waiting"] == 2


async def test_take_is_atomic_and_owned(queue: Queue, redis_client: aioredis.Redis) -> None:
    await queue.enqueue(job("a"))
    await queue.register("w", "t", LEASE_MS)
    taken = await queue.take("w", "t", 5, LEASE_MS)
    assert [j.id for j in taken.jobs] == ["a"]
    assert taken.jobs[0].attempts == 1
    assert await redis_client.lrange(queue.keys.active("w"), 0, -1) == [b"a"]
    status = await queue.status("a")
    assert status is not None and status.state == "active" and status.worker == "w"
    # a take with someone else's token is refused outright
    assert (await queue.take("w", "other", 1, LEASE_MS)).lost


async def test_lapsed_owner_is_fenced_and_job_recovered(
    queue: Queue, redis_client: aioredis.Redis
) -> None:
    await queue.enqueue(job("a"))
    await queue.register("old", "t1", 100)
    [held] = (await queue.take("old", "t1", 1, 100)).jobs

    async def lease_gone() -> bool:
        return not await redis_client.exists(queue.keys.lease("old"))

    await wait_for(lease_gone, what="lease expiry")
    # lapsed but not yet reaped: still fenced
    assert await queue.settle("old", "t1", [Settlement(held.element, "complete", b"{}")]) == [False]
    assert not await queue.renew("old", "t1", 100)
    assert await queue.reap() == 1
    assert await queue.reap() == 0  # a second reaper finds nothing left to give back
    status = await queue.status("a")
    assert status is not None and (status.state, status.recovered) == ("waiting", 1)
    await queue.register("new", "t2", LEASE_MS)
    [again] = (await queue.take("new", "t2", 1, LEASE_MS)).jobs
    assert again.attempts == 2
    assert await queue.settle("old", "t1", [Settlement(held.element, "complete", b"{}")]) == [False]
    assert await queue.settle("new", "t2", [Settlement(again.element, "complete", b"{}")]) == [True]
    status = await queue.status("a")
    assert status is not None and status.state == "completed"


async def test_reaper_leaves_live_owners_alone(queue: Queue) -> None:
    await queue.enqueue(job("a"))
    await queue.register("w", "t", LEASE_MS)
    await queue.take("w", "t", 1, LEASE_MS)
    assert await queue.reap() == 0
    assert (await queue.stats())["active"] == 1


async def test_release_gives_back_at_once_without_counting_the_attempt(queue: Queue) -> None:
    await queue.enqueue(job("a", priority="high"))
    await queue.register("w", "t", LEASE_MS)
    await queue.take("w", "t", 1, LEASE_MS)
    assert await queue.release("w", "t") == 1
    status = await queue.status("a")
    assert status is not None and (status.state, status.attempts) == ("waiting", 0)
    assert (await queue.stats())["active"] == 0


async def test_retry_goes_through_the_delayed_set(queue: Queue) -> None:
    await queue.enqueue(job("a"))
    await queue.register("w", "t", LEASE_MS)
    [held] = (await queue.take("w", "t", 1, LEASE_MS)).jobs
    err = b'{"reason":"error","error":"boom"}'
    assert await queue.settle("w", "t", [Settlement(held.element, "retry", "60000", err)]) == [True]
    status = await queue.status("a")
    assert status is not None and (status.state, status.lastError) == ("delayed", "boom")
    result = await queue.take("w", "t", 1, LEASE_MS)
    assert result.jobs == [] and result.next_due_in_ms is not None


async def test_delayed_job_is_promoted_when_due(queue: Queue) -> None:
    await queue.enqueue(job("a"), delay_seconds=0.05)
    await queue.register("w", "t", LEASE_MS)
    taken: list[str] = []

    async def promoted() -> bool:
        taken.extend(j.id for j in (await queue.take("w", "t", 1, LEASE_MS)).jobs)
        return bool(taken)

    await wait_for(promoted, what="promotion of the delayed job")
    assert taken == ["a"]


async def test_dead_letter_requeue_and_purge(queue: Queue) -> None:
    await queue.enqueue(job("a"))
    await queue.enqueue(job("b"))
    await queue.register("w", "t", LEASE_MS)
    held = (await queue.take("w", "t", 2, LEASE_MS)).jobs
    err = b'{"reason":"asset_missing","error":"asset x"}'
    items = [Settlement(h.element, "dead", _entry(queue, h), err) for h in held]
    assert await queue.settle("w", "t", items) == [True, True]
    assert (await queue.stats())["dead"] == 2
    done, refused = await queue.dlq_requeue("a")
    assert (done, refused) == (["a"], [])
    status = await queue.status("a")
    assert status is not None and (status.state, status.attempts) == ("waiting", 0)
    assert await queue.dlq_purge("b") == 1
    status_b = await queue.status("b")
    assert status_b is not None and status_b.state == "failed"
    assert (await queue.stats())["dead"] == 0


async def test_completed_retention_by_count(redis_client: aioredis.Redis) -> None:
    opts = JobOptions(remove_on_complete=Retention(age=0, count=2))
    queue = Queue(redis_client, name="q", defaults=opts)
    await queue.register("w", "t", LEASE_MS)
    for i in range(4):
        await queue.enqueue(job(f"j{i}"))
        [held] = (await queue.take("w", "t", 1, LEASE_MS)).jobs
        await queue.settle("w", "t", [Settlement(held.element, "complete", b"{}")])
    assert (await queue.stats())["completed"] == 2
    assert await queue.status("j0") is None and await queue.status("j3") is not None


async def test_completed_retention_by_age_sets_a_ttl(
    queue: Queue, redis_client: aioredis.Redis
) -> None:
    await queue.enqueue(job("a"))
    await queue.register("w", "t", LEASE_MS)
    [held] = (await queue.take("w", "t", 1, LEASE_MS)).jobs
    await queue.settle("w", "t", [Settlement(held.element, "complete", b"{}")])
    ttl = await redis_client.ttl(queue.keys.job("a"))
    assert 0 < ttl <= 3600


@pytest.mark.parametrize("legacy", [False, True])
async def test_wait_for_work_blocks_until_enqueue(
    queue: Queue, redis_server: RedisServer, legacy: bool
) -> None:
    blocking = aioredis.Redis.from_url(redis_server.url)
    try:
        assert not await queue.wait_for_work(blocking, 0.05, legacy=legacy)
        await queue.enqueue(job("a"))
        assert await queue.wait_for_work(blocking, 5, legacy=legacy)
        await queue.register("w", "t", LEASE_MS)
        assert [j.id for j in (await queue.take("w", "t", 5, LEASE_MS)).jobs] == ["a"]
        # the empty take cleared the wake token: idle workers block again, no busy polling
        assert (await queue.take("w", "t", 5, LEASE_MS)).jobs == []
        assert not await queue.wait_for_work(blocking, 0.05, legacy=legacy)
    finally:
        await blocking.aclose()


def test_backoff_grows_with_jitter_and_cap() -> None:
    rng = random.Random(7)
    for _ in range(200):
        delays = [backoff_delay(k, 1000, 30_000, rng) for k in range(1, 9)]
        assert delays == sorted(delays)
        assert all(0 < d <= 30_000 for d in delays)
        assert 500 <= delays[0] <= 1000
    spread = {backoff_delay(3, 1000, 30_000, rng) for _ in range(50)}
    assert len(spread) > 10


async def test_settle_and_take_in_one_round_trip(queue: Queue) -> None:
    for job_id in ("a", "b", "c"):
        await queue.enqueue(job(job_id))
    await queue.register("w", "t", LEASE_MS)
    [first] = (await queue.take("w", "t", 1, LEASE_MS)).jobs
    done = Settlement(first.element, "complete", b'{"n":1}', take=first.take)
    applied, taken = await queue.settle_and_take("w", "t", [done], 2, LEASE_MS)
    assert applied == [1]
    assert [j.id for j in taken.jobs] == ["b", "c"]
    status = await queue.status("a")
    assert status is not None
    assert (status.state, status.result) == ("completed", {"n": 1})
    # a resend of the same settlement is recognised; nothing left to take
    applied, taken = await queue.settle_and_take("w", "t", [done], 1, LEASE_MS)
    assert (applied, taken.jobs, taken.lost) == ([2], [], False)
    # with a wrong token nothing is settled and nothing is taken
    wrong = Settlement(first.element, "complete", b"{}", take=first.take)
    applied, taken = await queue.settle_and_take("w", "nope", [wrong], 1, LEASE_MS)
    assert (applied, taken.lost) == ([0], True)
