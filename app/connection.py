"""Redis clients for the worker and the CLI: a plain client, or a cluster client when
``PREVIEW_REDIS_CLUSTER`` is true (every key of a queue shares one hash tag, so the scripts run
on one node)."""

from __future__ import annotations

import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster

from .settings import Settings

Client = aioredis.Redis | RedisCluster


def connect(settings: Settings, *, blocking: bool = False) -> Client:
    """A client for ``settings.redis_url``. ``blocking`` clients have no socket timeout, for
    BLMOVE; the others time out after 10 s so a hung server cannot wedge a loop."""
    timeout = None if blocking else 10.0
    if settings.redis_cluster:
        return RedisCluster.from_url(
            settings.redis_url, socket_timeout=timeout, socket_connect_timeout=5
        )
    return aioredis.Redis.from_url(
        settings.redis_url, socket_timeout=timeout, socket_connect_timeout=5
    )
