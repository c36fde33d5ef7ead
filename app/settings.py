"""Worker configuration: one frozen object, read from environment variables and flags.

Every variable is documented in ``docs/configuration.md``; ``ENV_VARS`` is the single table
that both the parser and the docs test use.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

from .errors import ConfigError

Track = Literal["stable", "canary"]
LogFormat = Literal["json", "text"]

_QUEUE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def _int(lo: int, hi: int) -> Callable[[str], int]:
    def parse(raw: str) -> int:
        try:
            value = int(raw.strip())
        except ValueError:
            raise ValueError(f"expected an integer, got {raw!r}") from None
        if not lo <= value <= hi:
            raise ValueError(f"must be between {lo} and {hi}, got {value}")
        return value

    return parse


def _float(lo: float, hi: float) -> Callable[[str], float]:
    def parse(raw: str) -> float:
        try:
            value = float(raw.strip())
        except ValueError:
            raise ValueError(f"expected a number, got {raw!r}") from None
        if not lo <= value <= hi:
            raise ValueError(f"must be between {lo:g} and {hi:g}, got {value:g}")
        return value

    return parse


def _choice(*options: str) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        value = raw.strip().lower()
        if value not in options:
            raise ValueError(f"must be one of {', '.join(options)}, got {raw!r}")
        return value

    return parse


def _queue(raw: str) -> str:
    if not _QUEUE_NAME.match(raw):
        raise ValueError("must be 1-64 characters of letters, digits, '_', '.', '-'")
    return raw


def _redis_url(raw: str) -> str:
    if not raw.startswith(("redis://", "rediss://", "unix://")):
        raise ValueError("must start with redis://, rediss:// or unix://")
    return raw


def _hosts(raw: str) -> tuple[str, ...]:
    hosts = tuple(h.strip().lower() for h in raw.split(",") if h.strip())
    for host in hosts:
        if not re.match(r"^[a-z0-9.-]+(:[0-9]{1,5})?$", host):
            raise ValueError(f"invalid host {host!r}")
    return hosts


def _bool(raw: str) -> bool:
    value = raw.strip().lower()
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off"}:
        return False
    raise ValueError(f"expected true or false, got {raw!r}")


def _str(raw: str) -> str:
    return raw


@dataclass(frozen=True, kw_only=True)
class EnvVar:
    name: str
    attr: str
    default: str
    parse: Callable[[str], Any]
    help: str
    secret: bool = False


ENV_VARS: tuple[EnvVar, ...] = (
    EnvVar(
        name="REDIS_URL",
        attr="redis_url",
        default="redis://127.0.0.1:6379",
        parse=_redis_url,
        help="Redis connection URL (may hold a password: a secret).",
        secret=True,
    ),
    EnvVar(
        name="PREVIEW_REDIS_CLUSTER",
        attr="redis_cluster",
        default="false",
        parse=_bool,
        help="Talk to a Redis Cluster (all keys of a queue live in one slot).",
    ),
    EnvVar(
        name="PREVIEW_QUEUE",
        attr="queue",
        default="preview-jobs",
        parse=_queue,
        help="Queue name; every key of the queue shares the hash tag {name}.",
    ),
    EnvVar(
        name="PREVIEW_WORKER_CONCURRENCY",
        attr="concurrency",
        default="2",
        parse=_int(1, 1024),
        help="Jobs run at once by one worker process.",
    ),
    EnvVar(
        name="PREVIEW_QUEUE_MAX",
        attr="queue_max",
        default="10000",
        parse=_int(0, 10_000_000),
        help="Enqueue is refused ('queue is full') once waiting+delayed reach this; 0 = no cap.",
    ),
    EnvVar(
        name="DATA_DIR",
        attr="data_dir",
        default="./data",
        parse=Path,
        help="Where previews are written (DATA_DIR/previews/<projectId>/<jobId>/).",
    ),
    EnvVar(
        name="PREVIEW_LEASE_SECONDS",
        attr="lease_seconds",
        default="30",
        parse=_float(1, 3600),
        help="A worker's ownership TTL; jobs of a silent worker return after this plus one "
        "reaper interval.",
    ),
    EnvVar(
        name="PREVIEW_REAPER_INTERVAL_SECONDS",
        attr="reaper_interval_seconds",
        default="5",
        parse=_float(0.05, 600),
        help="How often each worker looks for dead owners.",
    ),
    EnvVar(
        name="PREVIEW_JOB_TIMEOUT_SECONDS",
        attr="job_timeout_seconds",
        default="300",
        parse=_float(0.01, 86400),
        help="An attempt running longer fails with reason 'timeout'.",
    ),
    EnvVar(
        name="PREVIEW_SHUTDOWN_GRACE_SECONDS",
        attr="shutdown_grace_seconds",
        default="25",
        parse=_float(0, 3600),
        help="On SIGTERM, how long in-flight jobs may finish before they are given back.",
    ),
    EnvVar(
        name="PREVIEW_MAX_PAYLOAD_BYTES",
        attr="max_payload_bytes",
        default="1048576",
        parse=_int(256, 64 * 1024 * 1024),
        help="Larger payloads are refused before decoding.",
    ),
    EnvVar(
        name="PREVIEW_ATTEMPTS",
        attr="attempts",
        default="5",
        parse=_int(1, 1000),
        help="Default attempts per job (enqueue option 'attempts').",
    ),
    EnvVar(
        name="PREVIEW_BACKOFF_SECONDS",
        attr="backoff_seconds",
        default="1",
        parse=_float(0, 86400),
        help="First retry delay; doubles per attempt, with jitter.",
    ),
    EnvVar(
        name="PREVIEW_BACKOFF_MAX_SECONDS",
        attr="backoff_max_seconds",
        default="300",
        parse=_float(0, 86400),
        help="Cap of the retry delay.",
    ),
    EnvVar(
        name="PREVIEW_HEALTH_HOST",
        attr="health_host",
        default="0.0.0.0",
        parse=_str,
        help="Address the health/metrics server binds.",
    ),
    EnvVar(
        name="PREVIEW_HEALTH_PORT",
        attr="health_port",
        default="3000",
        parse=_int(0, 65535),
        help="Port of /healthz, /readyz, /metrics and /api/preview/worker/health; 0 disables.",
    ),
    EnvVar(
        name="PREVIEW_STALL_SECONDS",
        attr="stall_seconds",
        default="30",
        parse=_float(1, 3600),
        help="Health reports the fetch loop stalled when it has not polled for this long.",
    ),
    EnvVar(
        name="PREVIEW_DEPTH_REFRESH_SECONDS",
        attr="depth_refresh_seconds",
        default="5",
        parse=_float(0.1, 3600),
        help="How often queue depth gauges are read from Redis.",
    ),
    EnvVar(
        name="PREVIEW_TRACK",
        attr="track",
        default="stable",
        parse=_choice("stable", "canary"),
        help="Release track; labels every metric series.",
    ),
    EnvVar(
        name="PREVIEW_DEFAULT_HANDLER",
        attr="default_handler",
        default="storyboard",
        parse=_str,
        help="Handler for jobs whose previewRequest.options.renderer is unset.",
    ),
    EnvVar(
        name="PREVIEW_ASSETS_DIR",
        attr="assets_dir",
        default="./assets",
        parse=Path,
        help="Local asset paths are confined to this folder.",
    ),
    EnvVar(
        name="PREVIEW_ASSET_HOSTS",
        attr="asset_hosts",
        default="",
        parse=_hosts,
        help="Comma-separated hosts http(s) assets may come from; empty = none.",
    ),
    EnvVar(
        name="PREVIEW_ASSET_MAX_BYTES",
        attr="asset_max_bytes",
        default="52428800",
        parse=_int(1024, 2**34),
        help="Largest asset accepted (local or downloaded).",
    ),
    EnvVar(
        name="PREVIEW_ASSET_TIMEOUT_SECONDS",
        attr="asset_timeout_seconds",
        default="20",
        parse=_float(0.1, 600),
        help="Timeout of one asset download.",
    ),
    EnvVar(
        name="PREVIEW_LOG_LEVEL",
        attr="log_level",
        default="info",
        parse=_choice("debug", "info", "warning", "error"),
        help="Log level.",
    ),
    EnvVar(
        name="PREVIEW_LOG_FORMAT",
        attr="log_format",
        default="json",
        parse=_choice("json", "text"),
        help="Log lines as JSON objects or plain text.",
    ),
    EnvVar(
        name="PREVIEW_WORKER_ID",
        attr="worker_id",
        default="",
        parse=_str,
        help="Worker identity in Redis and health output; default host-pid-random.",
    ),
)


@dataclass(frozen=True, kw_only=True)
class Settings:
    redis_url: str = field(default="redis://127.0.0.1:6379", repr=False)
    redis_cluster: bool = False
    queue: str = "preview-jobs"
    concurrency: int = 2
    queue_max: int = 10000
    data_dir: Path = Path("./data")
    lease_seconds: float = 30.0
    reaper_interval_seconds: float = 5.0
    job_timeout_seconds: float = 300.0
    shutdown_grace_seconds: float = 25.0
    max_payload_bytes: int = 1024 * 1024
    attempts: int = 5
    backoff_seconds: float = 1.0
    backoff_max_seconds: float = 300.0
    health_host: str = "0.0.0.0"
    health_port: int = 3000
    stall_seconds: float = 30.0
    depth_refresh_seconds: float = 5.0
    track: str = "stable"
    default_handler: str = "storyboard"
    assets_dir: Path = Path("./assets")
    asset_hosts: tuple[str, ...] = field(default_factory=tuple)
    asset_max_bytes: int = 50 * 1024 * 1024
    asset_timeout_seconds: float = 20.0
    log_level: str = "info"
    log_format: str = "json"
    worker_id: str = ""

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Build settings from ``env`` (default ``os.environ``); ``overrides`` win.

        Raises :class:`ConfigError` naming the variable and the rule it broke.
        """
        source = os.environ if env is None else env
        values: dict[str, Any] = {}
        for var in ENV_VARS:
            raw = source.get(var.name)
            if raw is None or raw == "":
                continue
            try:
                values[var.attr] = var.parse(raw)
            except ValueError as exc:
                shown = "<redacted>" if var.secret else repr(raw)
                raise ConfigError(f"{var.name}={shown}: {exc}") from None
        values.update({k: v for k, v in overrides.items() if v is not None})
        known = {f.name for f in fields(cls)}
        unknown = set(values) - known
        if unknown:
            raise ConfigError(f"unknown settings: {', '.join(sorted(unknown))}")
        return cls(**values)

    def redacted_redis_url(self) -> str:
        """The Redis URL with any user/password removed, for messages."""
        return redact_url(self.redis_url)


def redact_url(url: str) -> str:
    return re.sub(r"//[^@/]*@", "//***@", url)
