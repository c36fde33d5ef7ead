"""The documented foreign-producer command (docs/queue-protocol.md) really enqueues a job."""

from __future__ import annotations

import asyncio
import re
import shutil
import subprocess
from pathlib import Path

import redis.asyncio as aioredis

from app.queue import Queue
from tests.conftest import require_tool
from tests.redis_server import RedisServer

ROOT = Path(__file__).resolve().parents[1]


def documented_command() -> str:
    text = (ROOT / "docs" / "queue-protocol.md").read_text()
    blocks = re.findall(r"```sh\n(.*?)```", text, flags=re.S)
    commands: list[str] = [b for b in blocks if "enqueue.lua" in b]
    assert len(commands) == 1, "docs/queue-protocol.md must hold one enqueue.lua example"
    return commands[0]


def run(command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", "-c", command], cwd=ROOT, capture_output=True, text=True, check=True
    )


async def test_redis_cli_enqueue_from_docs(
    redis_server: RedisServer, redis_client: aioredis.Redis
) -> None:
    require_tool(shutil.which("redis-cli") is not None, "redis-cli")
    command = documented_command().replace("redis-cli ", f"redis-cli -p {redis_server.port} ", 1)
    out = await asyncio.to_thread(run, command)
    assert out.stdout.split() == ["created", "waiting"]
    queue = Queue(redis_client, name="preview-jobs")
    status = await queue.status("j-1")
    assert status is not None
    assert (status.state, status.maxAttempts, status.priority) == ("waiting", 5, "normal")
    assert (await queue.stats())["waiting"] == 1
    again = await asyncio.to_thread(run, command)
    assert again.stdout.split() == ["exists", "waiting"]
