"""The queue and worker unchanged on Redis Cluster (a one-node cluster owning every slot)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import RedisError

from app.embedded_redis import free_port, start_redis_server, stop_process
from app.handlers import NoopHandler
from app.keys import Keys
from app.queue import Queue
from app.settings import Settings
from app.worker import Worker
from tests.jobs import job, wait_for


@pytest.fixture
def cluster_url(tmp_path: Path) -> Iterator[str]:
    port = free_port()
    options = ["--cluster-enabled", "yes", "--cluster-config-file", str(tmp_path / "nodes.conf")]
    proc = start_redis_server(port, tmp_path, [*options, "--save", "", "--appendonly", "no"])
    try:
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        stop_process(proc, kill=True)


async def start_cluster(url: str) -> RedisCluster:
    plain = aioredis.Redis.from_url(url)

    async def up() -> bool:
        try:
            return bool(await plain.ping())
        except (OSError, RedisError):
            return False

    await wait_for(up, what="redis-server in cluster mode")
    await plain.execute_command("CLUSTER", "ADDSLOTSRANGE", 0, 16383)  # type: ignore[no-untyped-call]

    async def ok() -> bool:
        info = await plain.execute_command("CLUSTER", "INFO")  # type: ignore[no-untyped-call]
        text = info.decode() if isinstance(info, bytes) else str(info)
        return "cluster_state:ok" in text

    await wait_for(ok, what="cluster state ok")
    await plain.aclose()
    return RedisCluster.from_url(url)


def test_all_keys_of_a_queue_share_one_slot() -> None:
    from redis.crc import key_slot

    keys = Keys("preview-jobs")
    names = [
        *keys.waits,
        keys.wake,
        keys.workers,
        keys.delayed,
        keys.dead,
        keys.completed,
        keys.failed,
        keys.job("j"),
        keys.active("w"),
        keys.lease("w"),
    ]
    assert len({key_slot(name.encode()) for name in names}) == 1


async def test_worker_runs_unchanged_on_a_cluster(cluster_url: str) -> None:
    client = await start_cluster(cluster_url)
    try:
        queue = Queue(client, name="cq")
        results = await queue.enqueue_many(
            [job(f"j{i}", priority=("high", "low")[i % 2]) for i in range(30)]
        )
        assert all(getattr(r, "created", False) for r in results)
        await client.lpush(queue.keys.wait("normal"), b"\xffraw")
        settings = Settings.from_env(
            {},
            redis_url=cluster_url,
            redis_cluster=True,
            queue="cq",
            health_port=0,
            default_handler="noop",
        )
        worker = Worker(settings=settings, handlers={"noop": NoopHandler(settings)})
        async with asyncio.timeout(60):
            await worker.run(burst=True, install_signals=False)
        stats = await queue.stats()
        assert (stats["completed"], stats["dead"], stats["waiting"], stats["active"]) == (
            30,
            1,
            0,
            0,
        )
    finally:
        await client.aclose()
