"""The hiredis packer writes exactly the bytes redis-py's own packer writes."""

from __future__ import annotations

from typing import Any

import pytest
import redis.asyncio as aioredis

from app.connection import HiredisPackedConnection, connect
from app.settings import Settings

CASES: list[tuple[Any, ...]] = [
    ("PING",),
    ("EVALSHA", "a" * 40, 3, "pw:{q}:job:x", b"\xff\xfe raw", 0, -7, 1.5, "Catan – setup"),
    ("SCRIPT EXISTS", "abc"),
    ("CLIENT", "SETINFO", "LIB-NAME", "redis-py"),
    ("SET", "k", b"", "PX", 30000),
]


@pytest.mark.parametrize("args", CASES)
def test_same_bytes_as_redis_py(args: tuple[Any, ...]) -> None:
    ours = b"".join(HiredisPackedConnection().pack_command(*args))
    theirs = b"".join(aioredis.Connection().pack_command(*args))
    assert ours == theirs


def test_only_plain_tcp_urls_use_it() -> None:
    def kind(url: str) -> type:
        client = connect(Settings(redis_url=url))
        assert isinstance(client, aioredis.Redis)
        cls: type = client.connection_pool.connection_class
        return cls

    assert kind("redis://127.0.0.1:6379/0") is HiredisPackedConnection
    assert kind("rediss://127.0.0.1:6380/0") is aioredis.SSLConnection
    assert kind("unix:///run/redis.sock") is aioredis.UnixDomainSocketConnection
