"""The Redis queue: enqueue, take, settle, reap, status, stats and the dead-letter list.

Every state change is one Lua script (``app/lua/*.lua``), so it is atomic; the protocol is
described in ``docs/queue-protocol.md``. Per job a worker spends one ``take`` and one ``settle``
round trip (both batched over many jobs when concurrency allows).
"""

from __future__ import annotations

import asyncio
import base64
import random
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from importlib.resources import files
from typing import Any, Literal

import msgspec
import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.commands.core import AsyncScript

from .errors import PayloadError, PreviewWorkerError, QueueFullError
from .keys import Keys
from .payload import PreviewJob, decode_job

_json = msgspec.json.Encoder()


def now_ms() -> int:
    return int(time.time() * 1000)


class Retention(msgspec.Struct, frozen=True, kw_only=True):
    """Keep at most ``count`` records (-1: no limit; 0: remove at once), none older than
    ``age`` seconds (0: no age limit)."""

    age: int
    count: int


class JobOptions(msgspec.Struct, frozen=True, kw_only=True):
    attempts: int = 5
    backoff_seconds: float = 1.0
    backoff_max_seconds: float = 300.0
    remove_on_complete: Retention = Retention(age=3600, count=100)
    remove_on_fail: Retention = Retention(age=86400, count=100)

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError("attempts must be at least 1")
        if self.backoff_seconds < 0 or self.backoff_max_seconds < 0:
            raise ValueError("backoff must not be negative")


def backoff_delay(attempt: int, base_ms: int, cap_ms: int, rng: random.Random | None = None) -> int:
    """Exponential backoff with 'equal jitter', capped: with d = base * 2**(k-1) for attempt k,
    the delay is min(cap, uniform(d/2, d)). Delays never shrink from one attempt to the next,
    yet workers retrying together spread apart."""
    full = base_ms * (2 ** max(0, attempt - 1))
    half = full / 2
    return int(min(cap_ms, half + (rng or random).uniform(0, half)))


@dataclass(frozen=True, slots=True)
class EnqueueResult:
    job_id: str
    created: bool
    state: str


@dataclass(frozen=True, slots=True)
class TakenJob:
    element: bytes
    """The exact list element (a job id, or raw bytes someone pushed by hand)."""
    raw: bool
    payload: bytes
    attempts: int
    max_attempts: int
    backoff_ms: int
    backoff_max_ms: int
    enqueued_at: int
    priority: str
    take: int = 0
    """Fencing token: the job's take counter after this take (0 for raw elements)."""

    @property
    def id(self) -> str:
        return self.element.decode("utf-8", "replace")


@dataclass(frozen=True, slots=True)
class TakeResult:
    lost: bool
    jobs: list[TakenJob]
    next_due_in_ms: int | None
    """Milliseconds until the next delayed job is due (Redis clock); None: nothing delayed."""


Action = Literal["complete", "retry", "dead", "requeue"]


@dataclass(frozen=True, slots=True)
class Settlement:
    element: bytes
    action: Action
    a: bytes | str = b""
    b: bytes | str = b""
    take: int = 0
    """The take number this settles; 0 skips the take check (raw elements, resync)."""


class JobStatus(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """A job's status record, as ``preview-worker status --json`` prints it."""

    jobId: str
    state: str
    priority: str
    attempts: int
    maxAttempts: int
    enqueuedAt: str | None = None
    startedAt: str | None = None
    finishedAt: str | None = None
    updatedAt: str | None = None
    dueAt: str | None = None
    lastError: str | None = None
    reason: str | None = None
    result: Any = None
    recovered: int = 0
    worker: str | None = None


def iso_ms(value: bytes | str | int | None) -> str | None:
    if not value:
        return None
    ms = int(value)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ms / 1000)) + f".{ms % 1000:03d}Z"


class DeadLetter(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """One dead-letter entry: everything needed to understand and re-drive the job."""

    jobId: str | None
    queue: str
    reason: str
    error: str
    attempts: int
    failedAt: str
    enqueuedAt: str | None = None
    worker: str | None = None
    payload: str | None = None
    payloadBase64: str | None = None


def dead_letter_entry(
    *,
    queue: str,
    job: TakenJob,
    job_id: str | None,
    reason: str,
    error: str,
    worker: str,
) -> bytes:
    try:
        text: str | None = job.payload.decode("utf-8") if not job.raw else None
    except UnicodeDecodeError:
        text = None
    raw = job.element if job.raw else job.payload
    if job.raw:
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            text = None
    entry = DeadLetter(
        jobId=job_id,
        queue=queue,
        reason=reason,
        error=error,
        attempts=job.attempts,
        failedAt=iso_ms(now_ms()) or "",
        enqueuedAt=iso_ms(job.enqueued_at) if job.enqueued_at else None,
        worker=worker,
        payload=text,
        payloadBase64=None if text is not None else base64.b64encode(raw).decode(),
    )
    return _json.encode(entry)


def _load(name: str) -> str:
    return files("app").joinpath("lua", name).read_text(encoding="utf-8")


def _settle_and_take_source() -> str:
    """settle.lua and take.lua as two local functions of one script, so a worker settles what
    it finished and takes what it can start in a single round trip. Each body keeps its own
    KEYS/ARGV (they shadow the globals), so the two files stay the only copy of the logic."""
    return (
        "-- generated by app.queue from settle.lua and take.lua\n"
        "local function settle(KEYS, ARGV)\n" + _load("settle.lua") + "\nend\n"
        "local function take(KEYS, ARGV)\n" + _load("take.lua") + "\nend\n"
        "local n = tonumber(ARGV[1])\n"
        "return {settle({unpack(KEYS, 1, 10)}, {unpack(ARGV, 2, n + 1)}),\n"
        "        take({unpack(KEYS, 11, 17)}, {unpack(ARGV, n + 2, #ARGV)})}\n"
    )


class Queue:
    """One named queue on one Redis. Safe to share between tasks."""

    def __init__(
        self,
        redis: aioredis.Redis | RedisCluster,
        *,
        name: str = "preview-jobs",
        max_payload_bytes: int = 1024 * 1024,
        queue_max: int = 0,
        defaults: JobOptions | None = None,
    ) -> None:
        self.redis = redis
        self.name = name
        self.keys = Keys(name)
        self.max_payload_bytes = max_payload_bytes
        self.queue_max = queue_max
        self.defaults = defaults or JobOptions()
        self._enqueue: AsyncScript = redis.register_script(_load("enqueue.lua"))
        self._take: AsyncScript = redis.register_script(_load("take.lua"))
        self._settle: AsyncScript = redis.register_script(_load("settle.lua"))
        self._reap: AsyncScript = redis.register_script(_load("reap.lua"))
        self._stats: AsyncScript = redis.register_script(_load("stats.lua"))
        self._renew: AsyncScript = redis.register_script(_load("renew.lua"))
        self._register: AsyncScript = redis.register_script(_load("register.lua"))
        self._settle_take: AsyncScript = redis.register_script(_settle_and_take_source())
        self._pipelines = not isinstance(redis, RedisCluster)

    # ---- producers -------------------------------------------------------------------------

    def _prepare(
        self, payload: bytes | str | Mapping[str, Any] | PreviewJob
    ) -> tuple[PreviewJob, bytes]:
        if isinstance(payload, (PreviewJob, Mapping)):
            data = _json.encode(payload)
        elif isinstance(payload, str):
            data = payload.encode()
        else:
            data = payload
        return decode_job(data, max_bytes=self.max_payload_bytes), data

    def _enqueue_args(
        self, job: PreviewJob, data: bytes, options: JobOptions, delay_ms: int, entry: bytes = b""
    ) -> tuple[list[str], list[Any]]:
        k = self.keys
        keys = [
            k.job(job.job_id),
            k.wait(job.priority),
            *k.waits,
            k.delayed,
            k.wake,
            k.dead,
        ]
        args: list[Any] = [
            job.job_id,
            data,
            job.priority,
            options.attempts,
            int(options.backoff_seconds * 1000),
            int(options.backoff_max_seconds * 1000),
            options.remove_on_complete.age,
            options.remove_on_complete.count,
            options.remove_on_fail.age,
            options.remove_on_fail.count,
            self.queue_max,
            delay_ms,
            self.max_payload_bytes,
            entry,
        ]
        return keys, args

    def _result(self, job_id: str, reply: Sequence[bytes]) -> EnqueueResult:
        status, detail = reply[0].decode(), reply[1].decode()
        if status == "full":
            raise QueueFullError(
                f"queue is full: {self.name!r} holds {detail} jobs (PREVIEW_QUEUE_MAX="
                f"{self.queue_max}); job {job_id} was not enqueued"
            )
        if status == "too_large":
            raise PayloadError(
                "payload_too_large",
                f"payload is {detail} bytes, the limit is {self.max_payload_bytes}",
            )
        if status == "gone":
            return EnqueueResult(job_id, False, "gone")
        return EnqueueResult(job_id, status == "created", detail)

    async def enqueue(
        self,
        payload: bytes | str | Mapping[str, Any] | PreviewJob,
        *,
        options: JobOptions | None = None,
        delay_seconds: float = 0,
    ) -> EnqueueResult:
        """Validate and enqueue one job. Idempotent on ``jobId``: while a record with that id
        exists (live, or retained after it finished), the existing job is returned and nothing
        is added. Raises :class:`PayloadError` or :class:`QueueFullError`."""
        job, data = self._prepare(payload)
        keys, args = self._enqueue_args(
            job, data, options or self.defaults, int(delay_seconds * 1000)
        )
        reply = await self._enqueue(keys=keys, args=args)
        return self._result(job.job_id, reply)

    async def enqueue_many(
        self,
        payloads: Iterable[bytes | str | Mapping[str, Any] | PreviewJob],
        *,
        options: JobOptions | None = None,
        batch_size: int = 500,
    ) -> list[EnqueueResult | PreviewWorkerError]:
        """Enqueue many jobs, pipelined in batches (one round trip per batch). Each item's
        outcome is returned in order: a result, or the error that refused it."""
        out: list[EnqueueResult | PreviewWorkerError] = []
        batch: list[tuple[int, str, list[str], list[Any]]] = []

        async def flush() -> None:
            if not batch:
                return
            replies: list[Any]
            if self._pipelines:
                pipe = self.redis.pipeline(transaction=False)
                for _, _, keys, args in batch:
                    await self._enqueue(keys=keys, args=args, client=pipe)  # type: ignore[arg-type]
                replies = await pipe.execute(raise_on_error=False)
            else:  # Redis Cluster pipelines refuse scripts: send them concurrently instead
                replies = await asyncio.gather(
                    *(self._enqueue(keys=keys, args=args) for _, _, keys, args in batch),
                    return_exceptions=True,
                )
            for (index, job_id, _, _), reply in zip(batch, replies, strict=True):
                try:
                    if isinstance(reply, Exception):
                        raise reply
                    out[index] = self._result(job_id, reply)
                except PreviewWorkerError as exc:
                    out[index] = exc
            batch.clear()

        opts = options or self.defaults
        for payload in payloads:
            out.append(PreviewWorkerError("pending"))
            try:
                job, data = self._prepare(payload)
            except PayloadError as exc:
                out[-1] = exc
                continue
            keys, args = self._enqueue_args(job, data, opts, 0)
            batch.append((len(out) - 1, job.job_id, keys, args))
            if len(batch) >= batch_size:
                await flush()
        await flush()
        return out

    # ---- workers ---------------------------------------------------------------------------

    async def register(self, owner: str, token: str, lease_ms: int) -> None:
        await self._register(
            keys=[self.keys.lease(owner), self.keys.workers], args=[token, lease_ms, owner]
        )

    def _take_keys(self, owner: str) -> list[str]:
        k = self.keys
        return [*k.waits, k.active(owner), k.wake, k.lease(owner), k.delayed]

    def _take_args(self, owner: str, token: str, n: int, lease_ms: int) -> list[Any]:
        return [self.keys.job_prefix, owner, token, n, lease_ms]

    def _settle_keys(self, owner: str) -> list[str]:
        k = self.keys
        return [
            k.active(owner),
            k.lease(owner),
            k.delayed,
            k.dead,
            k.completed,
            k.failed,
            *k.waits,
            k.wake,
        ]

    def _settle_args(self, token: str, items: Sequence[Settlement]) -> list[Any]:
        args: list[Any] = [self.keys.job_prefix, token]
        for item in items:
            args.extend((item.element, item.take, item.action, item.a, item.b))
        return args

    @staticmethod
    def _taken(reply: Sequence[Any]) -> TakeResult:
        due = int(float(reply[1]))
        next_due = None if due < 0 else due
        if reply[0] == b"lost":
            return TakeResult(True, [], next_due)
        jobs = []
        for i in range(2, len(reply), 10):
            raw = reply[i + 1] == b"raw"
            jobs.append(
                TakenJob(
                    element=reply[i],
                    raw=raw,
                    payload=reply[i + 2] or b"",
                    attempts=0 if raw else int(reply[i + 3]),
                    max_attempts=1 if raw else int(reply[i + 4]),
                    backoff_ms=0 if raw else int(reply[i + 5]),
                    backoff_max_ms=0 if raw else int(reply[i + 6]),
                    enqueued_at=0 if raw else int(reply[i + 7]),
                    priority="normal" if raw else reply[i + 8].decode(),
                    take=int(reply[i + 9]),
                )
            )
        return TakeResult(False, jobs, next_due)

    async def take(self, owner: str, token: str, n: int, lease_ms: int) -> TakeResult:
        reply = await self._take(
            keys=self._take_keys(owner), args=self._take_args(owner, token, n, lease_ms)
        )
        return self._taken(reply)

    async def settle(self, owner: str, token: str, items: Sequence[Settlement]) -> list[int]:
        """Settle many jobs in one round trip. Per item: 1 applied, 2 applied earlier (a resend
        whose first reply was lost), 0 fenced (the owner no longer holds that take of the job)."""
        if not items:
            return []
        reply = await self._settle(
            keys=self._settle_keys(owner), args=self._settle_args(token, items)
        )
        return [int(x) for x in reply]

    async def settle_and_take(
        self, owner: str, token: str, items: Sequence[Settlement], n: int, lease_ms: int
    ) -> tuple[list[int], TakeResult]:
        """:meth:`settle` then :meth:`take`, atomically, in one round trip."""
        settle_args = self._settle_args(token, items)
        reply = await self._settle_take(
            keys=[*self._settle_keys(owner), *self._take_keys(owner)],
            args=[len(settle_args), *settle_args, *self._take_args(owner, token, n, lease_ms)],
        )
        return [int(x) for x in reply[0]], self._taken(reply[1])

    async def renew(self, owner: str, token: str, lease_ms: int) -> bool:
        return bool(await self._renew(keys=[self.keys.lease(owner)], args=[token, lease_ms]))

    async def reap(self) -> int:
        """Give back the jobs of every owner whose lease expired; returns how many."""
        k = self.keys
        moved, _ = await self._reap(keys=[k.workers, *k.waits, k.wake], args=[k.base, "", ""])
        return int(moved)

    async def release(self, owner: str, token: str) -> int:
        """Give back everything ``owner`` still holds, at once, and drop its lease."""
        k = self.keys
        moved, _ = await self._reap(keys=[k.workers, *k.waits, k.wake], args=[k.base, owner, token])
        return int(moved)

    async def active_elements(self, owner: str) -> list[bytes]:
        held: list[bytes] = await self.redis.lrange(self.keys.active(owner), 0, -1)  # type: ignore[assignment]
        return held

    async def wait_for_work(
        self, blocking: aioredis.Redis | RedisCluster, block_seconds: float, *, legacy: bool = False
    ) -> bool:
        """Block until work may be waiting (the wake token exists) or ``block_seconds`` pass.
        Uses BLMOVE (BRPOPLPUSH before Redis 6.2) from the wake list onto itself, which leaves
        the token in place for other idle workers."""
        wake = self.keys.wake
        if legacy:
            got = await blocking.brpoplpush(wake, wake, timeout=block_seconds)
        else:
            got = await blocking.blmove(wake, wake, block_seconds, "RIGHT", "RIGHT")  # type: ignore[arg-type]
        return got is not None

    # ---- inspection ------------------------------------------------------------------------

    async def stats(self) -> dict[str, int]:
        k = self.keys
        reply = await self._stats(
            keys=[k.workers, *k.waits, k.delayed, k.completed, k.failed, k.dead], args=[k.base]
        )
        names = ("waiting", "active", "delayed", "completed", "failed", "dead")
        return {name: int(v) for name, v in zip(names, reply, strict=True)}

    async def status(self, job_id: str) -> JobStatus | None:
        h: dict[bytes, bytes] = await self.redis.hgetall(self.keys.job(job_id))  # type: ignore[assignment]
        if not h:
            return None
        g = {key.decode(): value for key, value in h.items()}

        def s(name: str) -> str | None:
            v = g.get(name)
            return v.decode() if v else None

        result = None
        if g.get("result"):
            result = msgspec.json.decode(g["result"])
        return JobStatus(
            jobId=job_id,
            state=s("state") or "unknown",
            priority=s("priority") or "normal",
            attempts=int(g.get("attempts", 0)),
            maxAttempts=int(g.get("maxAttempts", 1)),
            enqueuedAt=iso_ms(g.get("enqueuedAt")),
            startedAt=iso_ms(g.get("startedAt")),
            finishedAt=iso_ms(g.get("finishedAt")),
            updatedAt=iso_ms(g.get("updatedAt")),
            dueAt=iso_ms(g.get("dueAt")) if s("state") == "delayed" else None,
            lastError=s("lastError"),
            reason=s("reason"),
            result=result,
            recovered=int(g.get("recovered", 0)),
            worker=s("owner"),
        )

    # ---- dead-letter list ------------------------------------------------------------------

    async def dlq_entries(self, start: int = 0, stop: int = -1) -> list[tuple[bytes, DeadLetter]]:
        raw: list[bytes] = await self.redis.lrange(self.keys.dead, start, stop)  # type: ignore[assignment]
        decoder = msgspec.json.Decoder(DeadLetter)
        return [(item, decoder.decode(item)) for item in raw]

    async def dlq_find(self, job_id: str) -> list[tuple[bytes, DeadLetter]]:
        return [(raw, e) for raw, e in await self.dlq_entries() if e.jobId == job_id]

    async def dlq_requeue(
        self, job_id: str | None, *, options: JobOptions | None = None
    ) -> tuple[list[str], list[str]]:
        """Re-drive dead-letter entries (one job id, or all when ``job_id`` is None) as fresh
        jobs. Each entry is removed and re-enqueued in one atomic step. Returns (requeued,
        refused with reasons)."""
        entries = await (self.dlq_find(job_id) if job_id else self.dlq_entries())
        done: list[str] = []
        refused: list[str] = []
        for raw, entry in entries:
            label = entry.jobId or "<no id>"
            if entry.payload is None:
                refused.append(f"{label}: payload is not UTF-8; fix it and enqueue it anew")
                continue
            try:
                job, data = self._prepare(entry.payload)
            except PayloadError as exc:
                refused.append(f"{label}: {exc.reason}: {exc.message}")
                continue
            keys, args = self._enqueue_args(job, data, options or self.defaults, 0, raw)
            try:
                result = self._result(job.job_id, await self._enqueue(keys=keys, args=args))
            except PreviewWorkerError as exc:
                refused.append(f"{label}: {exc}")
                continue
            if result.created:
                done.append(job.job_id)
            elif result.state == "gone":
                refused.append(f"{label}: entry already re-driven or purged")
            else:
                refused.append(f"{label}: a live job with this id exists ({result.state})")
        return done, refused

    async def dlq_purge(self, job_id: str | None) -> int:
        """Delete dead-letter entries (one job id or all); the job records say 'failed'."""
        if job_id is None:
            entries = await self.dlq_entries()
            removed = 0
            for raw, entry in entries:
                removed += await self._purge_one(raw, entry.jobId)
            return removed
        removed = 0
        for raw, _ in await self.dlq_find(job_id):
            removed += await self._purge_one(raw, job_id)
        return removed

    async def _purge_one(self, raw: bytes, job_id: str | None) -> int:
        removed = int(await self.redis.lrem(self.keys.dead, 1, raw))  # type: ignore[arg-type]
        if removed and job_id:
            key = self.keys.job(job_id)
            if await self.redis.hget(key, "state") == b"dead":
                await self.redis.hset(key, "state", "failed")
        return removed
