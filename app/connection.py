"""Redis clients for the worker and the CLI: a plain client, or a cluster client when
``PREVIEW_REDIS_CLUSTER`` is true (every key of a queue shares one hash tag, so the scripts run
on one node)."""

from __future__ import annotations

from typing import Any

import hiredis
import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster

from .settings import Settings

Client = aioredis.Redis | RedisCluster


class HiredisPackedConnection(aioredis.Connection):
    """A TCP connection that serialises commands with hiredis's C packer instead of redis-py's
    pure-Python one (redis-py's asyncio client does not use it): the largest single cost of a
    script call on the worker's hot path."""

    def pack_command(self, *args: Any) -> list[bytes]:
        if isinstance(args[0], str) and " " in args[0]:  # e.g. "SCRIPT EXISTS"
            args = (*args[0].split(), *args[1:])
        return [hiredis.pack_command(args)]


def connect(settings: Settings, *, blocking: bool = False) -> Client:
    """A client for ``settings.redis_url``. ``blocking`` clients have no socket timeout, for
    BLMOVE; the others time out after 10 s so a hung server cannot wedge a loop."""
    timeout = None if blocking else 10.0
    if settings.redis_cluster:
        return RedisCluster.from_url(
            settings.redis_url, socket_timeout=timeout, socket_connect_timeout=5
        )
    extra: dict[str, Any] = {}
    if settings.redis_url.startswith("redis://"):  # TLS and unix sockets keep their classes
        extra["connection_class"] = HiredisPackedConnection
    return aioredis.Redis.from_url(
        settings.redis_url, socket_timeout=timeout, socket_connect_timeout=5, **extra
    )
