"""The worker: takes jobs, runs handlers, settles outcomes, renews its lease, reaps dead owners.

Loops (all in one event loop):
- fetch: ``take`` as many jobs as there are free slots (one Lua call); when the queue is empty,
  block on the wake list (BLMOVE) until work arrives, a delayed job falls due, or a second passes.
- settle: outcomes of finished jobs are settled in batches, one fenced Lua call per batch.
- renew: one lease per worker, renewed every third of ``PREVIEW_LEASE_SECONDS``. If it lapsed,
  the worker takes a new identity and abandons what it held (reapers give it back).
- reap: gives back the jobs of owners whose lease expired.
- depths: refreshes queue depth gauges on a timer.

SIGTERM/SIGINT: stop fetching, let in-flight jobs finish for up to
``PREVIEW_SHUTDOWN_GRACE_SECONDS``, then cancel the rest and give them back at once; a second
signal skips the wait.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import logging
import os
import random
import secrets
import signal
import socket
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import msgspec
from redis.exceptions import (
    BusyLoadingError,
    ClusterDownError,
    MasterDownError,
    OutOfMemoryError,
    ReadOnlyError,
    RedisError,
    TryAgainError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from . import __version__
from .connection import connect
from .errors import JobError, PayloadError, PreviewWorkerError
from .handlers import Handler, JobContext, handler_name, load_handlers
from .metrics import Metrics
from .payload import PreviewJob, decode_job
from .queue import (
    JobOptions,
    Queue,
    Retention,
    Settlement,
    TakenJob,
    TakeResult,
    backoff_delay,
)
from .queue import dead_letter_entry as make_dead_entry
from .settings import Settings

log = logging.getLogger("preview_worker")
T = TypeVar("T")
_json = msgspec.json.Encoder()
POLL_SECONDS = 1.0
"""Longest blocking wait, so the fetch loop proves it is alive at least this often."""
TRANSIENT = (
    RedisConnectionError,
    RedisTimeoutError,
    OSError,
    ReadOnlyError,  # a replica during a failover
    BusyLoadingError,  # a restarted server still loading its data
    TryAgainError,
    ClusterDownError,
    MasterDownError,
    OutOfMemoryError,
)
"""Failures that pass: retried for as long as they last."""
FAILURES = (RedisError, OSError)
"""Any Redis failure. Loops back off and retry on all of them (a READONLY replica after a
failover, a server still loading, a lost connection) so the worker never crashes on Redis."""
BLOCK_GRACE_SECONDS = 5.0
GIVE_BACK_SECONDS = 5.0
"""After the grace: how long cancelled jobs may take to be settled back onto the queue."""
RELEASE_SECONDS = 3.0
"""Then: how long the final give-back of anything still held may take. Shutdown therefore ends
within PREVIEW_SHUTDOWN_GRACE_SECONDS + 8 s even while Redis is down (the chart allows + 15 s)."""


@dataclass(slots=True)
class _Running:
    job: TakenJob
    owner: str
    token: str
    task: asyncio.Task[None] | None = None


@dataclass(slots=True)
class _Outcome:
    seq: int
    owner: str
    token: str
    settlement: Settlement
    counts: tuple[str, ...]
    duration: float | None
    job_id: str


@dataclass(slots=True)
class _Identity:
    owner: str
    token: str
    generation: int = 0


def default_worker_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(2)}"


def options_from(settings: Settings) -> JobOptions:
    return JobOptions(
        attempts=settings.attempts,
        backoff_seconds=settings.backoff_seconds,
        backoff_max_seconds=settings.backoff_max_seconds,
        remove_on_complete=Retention(age=3600, count=100),
        remove_on_fail=Retention(age=86400, count=100),
    )


class Worker:
    def __init__(
        self,
        *,
        settings: Settings,
        handlers: Mapping[str, Handler] | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.settings = settings
        self.worker_id = settings.worker_id or default_worker_id()
        self.track = settings.track
        self.concurrency = settings.concurrency
        self.version = __version__
        self.metrics = metrics or Metrics(queue=settings.queue, track=settings.track)
        self.handlers: Mapping[str, Handler] = (
            handlers if handlers is not None else load_handlers(settings)
        )
        self.redis = connect(settings)
        self._blocking = connect(settings, blocking=True)
        self.queue = Queue(
            self.redis,
            name=settings.queue,
            max_payload_bytes=settings.max_payload_bytes,
            queue_max=settings.queue_max,
            defaults=options_from(settings),
        )
        self.lease_ms = int(settings.lease_seconds * 1000)
        self._id = _Identity(owner=self._owner_name(0), token=secrets.token_hex(8))
        self._running: dict[int, _Running] = {}
        self._seq = 0
        self._outcomes: list[_Outcome] = []
        self._outcome_event = asyncio.Event()
        self._slot_event = asyncio.Event()
        self._stop_event = asyncio.Event()
        self._immediate_event = asyncio.Event()
        self._drained_event = asyncio.Event()
        self._shutdown_requests = 0
        self._draining = False
        self._last_poll: float | None = None
        self._started = time.monotonic()
        self._legacy_redis = False
        self._needs_resync = False
        self._identity_lock = asyncio.Lock()
        self._take_lock = asyncio.Lock()
        """Serialises takes and the resync, which must not see a take's jobs half-started."""
        self._fetch_parked = False
        self._redis_ok = False
        self._fetch_task: asyncio.Task[None] | None = None
        self._depths: dict[str, int] = {}

    # ---- identity ----------------------------------------------------------------------------

    def _owner_name(self, generation: int) -> str:
        return self.worker_id if generation == 0 else f"{self.worker_id}.g{generation}"

    @property
    def owner(self) -> str:
        return self._id.owner

    async def _new_identity(self) -> None:
        """Register a fresh owner id and token, then switch to it (never the other way round:
        a loop that sees the new owner must find its lease in Redis)."""
        generation = self._id.generation + 1
        owner, token = self._owner_name(generation), secrets.token_hex(8)
        await self._retry(
            functools.partial(self.queue.register, owner, token, self.lease_ms), forever=True
        )
        self._id.generation, self._id.owner, self._id.token = generation, owner, token

    # ---- WorkerStatus (read by the health app) -----------------------------------------------

    def in_flight(self) -> int:
        return len(self._running)

    def seconds_since_poll(self) -> float | None:
        return None if self._last_poll is None else time.monotonic() - self._last_poll

    def fetch_loop_alive(self) -> bool:
        if self._draining:
            return True
        return self._fetch_task is not None and not self._fetch_task.done()

    def uptime_seconds(self) -> float:
        return time.monotonic() - self._started

    def draining(self) -> bool:
        return self._draining

    async def redis_ping_ms(self) -> float:
        start = time.perf_counter()
        async with asyncio.timeout(1.0):
            await self.redis.ping()
        return (time.perf_counter() - start) * 1000

    async def queue_depths(self) -> dict[str, int]:
        return dict(self._depths)

    # ---- control -------------------------------------------------------------------------------

    def request_shutdown(self) -> None:
        """First call: drain (finish in-flight jobs within the grace period). Second: give
        everything back now."""
        self._shutdown_requests += 1
        if self._shutdown_requests == 1:
            log.info(
                "shutdown requested: draining",
                extra={
                    "in_flight": self.in_flight(),
                    "grace_s": self.settings.shutdown_grace_seconds,
                },
            )
            self._stop_event.set()
        else:
            log.warning("second shutdown request: giving in-flight jobs back now")
            self._immediate_event.set()
        self._slot_event.set()

    def _install_signals(self) -> list[signal.Signals]:
        loop = asyncio.get_running_loop()
        installed = []
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.add_signal_handler(sig, self.request_shutdown)
                installed.append(sig)
        return installed

    async def run(self, *, burst: bool = False, install_signals: bool = True) -> None:
        """Run until shutdown is requested (or, with ``burst``, until the queue is empty)."""
        signals = self._install_signals() if install_signals else []
        health: Any = None
        loops: list[asyncio.Task[None]] = []
        try:
            if self.settings.health_port:
                from .health import HealthServer

                health = HealthServer(
                    self, host=self.settings.health_host, port=self.settings.health_port
                )
                try:
                    await health.start()
                except OSError as exc:
                    where = f"{self.settings.health_host}:{self.settings.health_port}"
                    raise PreviewWorkerError(
                        f"cannot serve health and metrics on {where}: {exc.strerror or exc} "
                        "(set PREVIEW_HEALTH_PORT to a free port, or 0 to disable)"
                    ) from None
            if not await self._connect():
                return
            log.info(
                "worker started",
                extra={
                    "worker": self.worker_id,
                    "queue": self.settings.queue,
                    "concurrency": self.concurrency,
                    "track": self.track,
                    "version": self.version,
                    "handlers": sorted(self.handlers),
                },
            )
            self._fetch_task = asyncio.create_task(self._fetch_loop(burst), name="fetch")
            loops = [
                asyncio.create_task(self._settle_loop(), name="settle"),
                asyncio.create_task(self._renew_loop(), name="renew"),
                asyncio.create_task(self._reaper_loop(), name="reap"),
                asyncio.create_task(self._depth_loop(), name="depths"),
            ]
            stop = asyncio.create_task(self._stop_event.wait())
            await asyncio.wait({stop, self._fetch_task}, return_when=asyncio.FIRST_COMPLETED)
            stop.cancel()
            await self._drain()
        finally:
            self._draining = True
            for task in loops:
                task.cancel()
            await asyncio.gather(*loops, return_exceptions=True)
            if self._fetch_task is not None and not self._fetch_task.done():
                self._fetch_task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await self._fetch_task
            if health is not None:
                await health.stop()
            await self._close()
            loop = asyncio.get_running_loop()
            for sig in signals:
                loop.remove_signal_handler(sig)
        log.info("worker stopped", extra={"worker": self.worker_id})

    async def _connect(self) -> bool:
        """Wait for Redis (retrying with backoff), register this owner. False if stopped first."""
        while not self._stop_event.is_set():
            try:
                info = await self.redis.info("server")
                version = tuple(int(x) for x in str(info["redis_version"]).split(".")[:2])
                self._legacy_redis = version < (6, 2)
                await self.queue.register(self.owner, self._id.token, self.lease_ms)
                self._redis_ok = True
                return True
            except FAILURES as exc:
                await self._redis_down(exc, 0)
        return False

    async def _drain(self) -> None:
        self._draining = True
        if self._fetch_task is not None and not self._fetch_task.done():
            self._fetch_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._fetch_task
        grace = self.settings.shutdown_grace_seconds
        if self._running:
            log.info("draining in-flight jobs", extra={"in_flight": len(self._running)})
            waits = {
                asyncio.create_task(self._drained_event.wait()),
                asyncio.create_task(self._immediate_event.wait()),
            }
            self._drained_event.clear()  # set by every earlier moment of idleness
            self._check_drained()
            await asyncio.wait(waits, timeout=grace, return_when=asyncio.FIRST_COMPLETED)
            for task in waits:
                task.cancel()
        if self._running:
            log.warning("grace period over: giving jobs back", extra={"jobs": len(self._running)})
            for running in list(self._running.values()):
                if running.task is not None:
                    running.task.cancel()
            # the cancelled jobs record 'requeue' outcomes; wait for the settle loop
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(GIVE_BACK_SECONDS):
                    while self._running:
                        self._drained_event.clear()
                        self._check_drained()
                        await self._drained_event.wait()
        # anything still held (e.g. settle failed) goes back now, not at lease expiry
        with contextlib.suppress(RedisError, OSError, TimeoutError):
            async with asyncio.timeout(RELEASE_SECONDS):
                given = await self.queue.release(self.owner, self._id.token)
                if given:
                    log.info("gave jobs back at shutdown", extra={"jobs": given})

    def _check_drained(self) -> None:
        if not self._running:
            self._drained_event.set()

    async def _close(self) -> None:
        for client in (self.redis, self._blocking):
            with contextlib.suppress(Exception):
                await client.aclose()

    # ---- Redis resilience --------------------------------------------------------------------

    async def _redis_down(self, exc: BaseException, attempt: int) -> None:
        self.metrics.redis_error()
        if self._redis_ok or attempt == 0:
            log.warning("redis unavailable, retrying", extra={"error": type(exc).__name__})
        self._redis_ok = False
        delay = min(5.0, 0.1 * 2**attempt) * random.uniform(0.5, 1.0)
        if self._immediate_event.is_set():  # stopping now: short pauses, never a hot loop
            await asyncio.sleep(min(delay, 0.2))
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(delay):
                await self._immediate_event.wait()

    async def _retry(self, call: Callable[[], Awaitable[T]], *, forever: bool = False) -> T:
        """Run ``call`` until it succeeds. Passing failures (connection, failover, loading) are
        retried for as long as they last, with capped backoff; any other Redis error a few
        times, then raised (unless ``forever``)."""
        attempt = 0
        while True:
            try:
                result = await call()
            except FAILURES as exc:
                if not forever and not isinstance(exc, TRANSIENT) and attempt >= 4:
                    raise
                await self._redis_down(exc, attempt)
                attempt += 1
                continue
            if not self._redis_ok:
                log.info("redis reachable again")
            self._redis_ok = True
            return result

    # ---- fetch ---------------------------------------------------------------------------------

    def _mark_polled(self) -> None:
        self._last_poll = time.monotonic()
        self.metrics.polled(time.time())

    async def _fetch_loop(self, burst: bool) -> None:
        attempt = 0
        while not self._stop_event.is_set():
            # first, even while saturated: a take whose reply was lost may have left jobs held
            # in our name that nothing runs
            if self._needs_resync:
                try:
                    async with self._take_lock:
                        await self._resync()
                except FAILURES as exc:
                    await self._redis_down(exc, attempt)
                    attempt += 1
                    continue
                self._needs_resync = False
            free = self.concurrency - len(self._running)
            if free <= 0:
                # saturated: the settle loop takes the next jobs with its settlements; prove
                # the loop is alive while slots are busy
                self._slot_event.clear()
                self._fetch_parked = True
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(POLL_SECONDS):
                        await self._slot_event.wait()
                self._fetch_parked = False
                self._mark_polled()
                continue
            owner, token = self.owner, self._id.token
            # burst mode may stop only after a take that no settlement could race with
            idle_before = not self._running and not self._outcomes
            try:
                async with self._take_lock:
                    result = await self.queue.take(owner, token, free, self.lease_ms)
            except FAILURES as exc:
                await self._redis_down(exc, attempt)
                attempt += 1
                self._needs_resync = True
                continue
            if attempt:
                log.info("redis reachable again")
                self._redis_ok = True
                attempt = 0
            self._mark_polled()
            if result.lost:
                await self._lost_ownership(owner)
                continue
            for job in result.jobs:
                self._start(job, owner, token)
            if result.jobs:
                continue
            if burst and idle_before and not self._running and result.next_due_in_ms is None:
                log.info("burst mode: queue empty, stopping")
                return
            block = POLL_SECONDS
            if result.next_due_in_ms is not None:
                block = min(block, max(0.005, result.next_due_in_ms / 1000))
            if burst and self._running:
                # burst: wake when a slot frees too, to notice the queue draining
                self._slot_event.clear()
                block = min(block, 0.05)
            try:
                async with asyncio.timeout(block + BLOCK_GRACE_SECONDS):
                    await self.queue.wait_for_work(self._blocking, block, legacy=self._legacy_redis)
            except (TimeoutError, *FAILURES) as exc:
                # a blocking call that outlives its own timeout sits on a dead connection
                # (e.g. after a failover): drop the client and start over
                stale, self._blocking = self._blocking, connect(self.settings, blocking=True)
                with contextlib.suppress(Exception):
                    await stale.aclose()
                await self._redis_down(exc, attempt)
                attempt += 1
                continue
            self._mark_polled()

    async def _resync(self) -> None:
        """A take whose reply was lost may have moved jobs into our active list: give back any
        element we hold in Redis but not in memory. Raises on Redis failure (retried)."""
        held = await self.queue.active_elements(self.owner)
        orphans = list(held)
        for running in self._running.values():
            if running.owner == self.owner and running.job.element in orphans:
                orphans.remove(running.job.element)
        if not orphans:
            return
        items = [Settlement(element, "requeue") for element in orphans]
        await self.queue.settle(self.owner, self._id.token, items)
        log.info("gave back jobs taken while redis was failing", extra={"jobs": len(items)})

    async def _lost_ownership(self, owner: str) -> None:
        """Several loops may notice the same lost lease: the first replaces the identity, the
        others find it already replaced."""
        async with self._identity_lock:
            if owner != self.owner:
                return
            abandoned = [r for r in self._running.values() if r.owner == owner]
            log.error(
                "lease lost: abandoning held jobs (a reaper gives them back)",
                extra={"owner": owner, "jobs": len(abandoned)},
            )
            await self._new_identity()
        for running in abandoned:
            if running.task is not None:
                running.task.cancel()

    def _start(self, job: TakenJob, owner: str, token: str) -> None:
        self._seq += 1
        seq = self._seq
        running = _Running(job, owner, token)
        self._running[seq] = running
        running.task = asyncio.create_task(self._run_job(seq, running))
        self.metrics.set_in_flight(len(self._running))

    # ---- jobs ----------------------------------------------------------------------------------

    async def _run_job(self, seq: int, running: _Running) -> None:
        job = running.job
        started = time.monotonic()
        duration: float | None = None
        job_id = job.id
        try:
            settlement, counts, job_id, ran = await self._process(job)
            if ran:
                duration = time.monotonic() - started
        except asyncio.CancelledError:
            if running.owner != self.owner:
                settlement, counts = Settlement(job.element, "requeue"), ("lost",)
            else:
                settlement, counts = Settlement(job.element, "requeue"), ("requeued",)
                log.info("job given back", extra={"job": job_id, "attempt": job.attempts})
        except Exception as exc:  # a bug in the worker itself: never lose the job
            log.exception("worker error while running a job", extra={"job": job_id})
            settlement, counts = self._failure(job, job_id, "error", repr(exc), True)
        settlement = dataclasses.replace(settlement, take=job.take)
        self._outcomes.append(
            _Outcome(seq, running.owner, running.token, settlement, counts, duration, job_id)
        )
        self._outcome_event.set()

    async def _process(self, job: TakenJob) -> tuple[Settlement, tuple[str, ...], str, bool]:
        max_bytes = self.settings.max_payload_bytes
        if job.raw:
            try:
                decoded = decode_job(job.element, max_bytes=max_bytes)
            except PayloadError as exc:
                s, c = self._dead(job, None, exc.reason, exc.message, ("invalid",))
                return s, c, job.id, False
            message = (
                "a valid job was pushed onto the wait list without the enqueue script; "
                "re-drive it with `preview-worker dlq requeue`"
            )
            s, c = self._dead(job, decoded.job_id, "unregistered", message, ("invalid",))
            return s, c, decoded.job_id, False
        try:
            pj = decode_job(job.payload, max_bytes=max_bytes)
        except PayloadError as exc:
            s, c = self._dead(job, job.id, exc.reason, exc.message, ("invalid",))
            return s, c, job.id, False
        if job.attempts > job.max_attempts:
            message = (
                f"taken {job.attempts} times for {job.max_attempts} attempts: its workers died "
                "or lost it each time"
            )
            s, c = self._dead(job, pj.job_id, "attempts_exhausted", message, ("failed", "dead"))
            return s, c, pj.job_id, False
        if pj.dry_run:
            log.info("dry run: skipped rendering", extra={"job": pj.job_id})
            result = {"dryRun": True, "rendered": False}
            return (
                Settlement(job.element, "complete", _json.encode(result)),
                ("dryrun",),
                pj.job_id,
                False,
            )
        name = handler_name(pj, self.settings)
        handler = self.handlers.get(name)
        if handler is None:
            installed = ", ".join(sorted(self.handlers)) or "none"
            message = f"no handler named {name!r}; installed: {installed}"
            s, c = self._dead(job, pj.job_id, "unknown_handler", message, ("failed", "dead"))
            return s, c, pj.job_id, False
        s, c = await self._call_handler(job, pj, handler, name)
        return s, c, pj.job_id, True

    async def _call_handler(
        self, job: TakenJob, pj: PreviewJob, handler: Handler, name: str
    ) -> tuple[Settlement, tuple[str, ...]]:
        ctx = JobContext(
            job=pj, attempt=job.attempts, settings=self.settings, worker_id=self.worker_id
        )
        extra = {"job": pj.job_id, "attempt": job.attempts, "handler": name}
        log.info("job started", extra=extra)
        timeout = self.settings.job_timeout_seconds
        try:
            async with asyncio.timeout(timeout) as scope:
                result = await handler(ctx)
            body = _json.encode(dict(result))
        except TimeoutError:
            if scope.expired():
                return self._failure(
                    job, pj.job_id, "timeout", f"attempt exceeded {timeout:g}s", True
                )
            return self._failure(
                job, pj.job_id, "error", "TimeoutError raised by the handler", True
            )
        except JobError as exc:
            return self._failure(job, pj.job_id, exc.reason, exc.message, exc.retryable)
        except (TypeError, msgspec.EncodeError) as exc:
            return self._failure(job, pj.job_id, "error", f"{type(exc).__name__}: {exc}", True)
        except Exception as exc:
            log.warning("job attempt failed", extra={**extra, "error": repr(exc)})
            return self._failure(job, pj.job_id, "error", f"{type(exc).__name__}: {exc}", True)
        log.info("job completed", extra=extra)
        return Settlement(job.element, "complete", body), ("completed",)

    def _failure(
        self, job: TakenJob, job_id: str, reason: str, message: str, retryable: bool
    ) -> tuple[Settlement, tuple[str, ...]]:
        if retryable and job.attempts < job.max_attempts:
            delay = backoff_delay(job.attempts, job.backoff_ms, job.backoff_max_ms)
            log.info(
                "job attempt failed, retrying",
                extra={
                    "job": job_id,
                    "attempt": job.attempts,
                    "reason": reason,
                    "error": message,
                    "retry_in_ms": delay,
                },
            )
            err = _json.encode({"reason": reason, "error": message})
            return Settlement(job.element, "retry", str(delay), err), ("failed", "retried")
        return self._dead(job, job_id, reason, message, ("failed", "dead"))

    def _dead(
        self, job: TakenJob, job_id: str | None, reason: str, message: str, counts: tuple[str, ...]
    ) -> tuple[Settlement, tuple[str, ...]]:
        log.warning(
            "job dead-lettered",
            extra={"job": job_id, "attempt": job.attempts, "reason": reason, "error": message},
        )
        entry = make_dead_entry(
            queue=self.settings.queue,
            job=job,
            job_id=job_id,
            reason=reason,
            error=message,
            worker=self.worker_id,
        )
        err = _json.encode({"reason": reason, "error": message})
        return Settlement(job.element, "dead", entry, err), counts

    # ---- settle --------------------------------------------------------------------------------

    async def _settle_loop(self) -> None:
        """Settle finished jobs in batches. While the fetch loop is parked because every slot is
        busy, the same script call also takes the next jobs: one round trip per job."""
        while True:
            await self._outcome_event.wait()
            self._outcome_event.clear()
            batch, self._outcomes = self._outcomes, []
            groups: dict[tuple[str, str], list[_Outcome]] = {}
            for outcome in batch:
                groups.setdefault((outcome.owner, outcome.token), []).append(outcome)
            for (owner, token), items in groups.items():
                applied, taken = await self._settle_group(owner, token, items)
                for outcome, ok in zip(items, applied, strict=True):
                    self._running.pop(outcome.seq, None)
                    if not ok:
                        self.metrics.add_fenced()
                        log.warning(
                            "settlement refused: ownership lost (another worker owns the job)",
                            extra={"job": outcome.job_id, "owner": owner},
                        )
                        continue
                    for name in outcome.counts:
                        if name not in ("requeued", "lost"):
                            self.metrics.job(name)
                    if outcome.duration is not None:
                        self.metrics.observe_duration(outcome.duration)
                if taken is not None:
                    await self._taken_while_settling(owner, token, taken)
            self.metrics.set_in_flight(len(self._running))
            self._slot_event.set()
            self._check_drained()

    async def _settle_group(
        self, owner: str, token: str, items: list[_Outcome]
    ) -> tuple[list[int], TakeResult | None]:
        if owner != self.owner:
            return [0] * len(items), None
        settlements = [o.settlement for o in items]
        want = 0
        if self._fetch_parked and not self._stop_event.is_set():
            want = max(0, self.concurrency - len(self._running) + len(items))

        async def call() -> tuple[list[int], TakeResult | None]:
            if owner != self.owner:  # replaced while retrying: fenced anyway
                return [0] * len(settlements), None
            if not want:
                return await self.queue.settle(owner, token, settlements), None
            async with self._take_lock:
                try:
                    return await self.queue.settle_and_take(
                        owner, token, settlements, want, self.lease_ms
                    )
                except BaseException:
                    self._needs_resync = True  # a lost reply may have moved jobs to us
                    raise

        try:
            return await self._retry(call)
        except FAILURES:
            # Redis keeps refusing this batch: give up the identity; the jobs come back
            # through the reaper when the old lease expires
            log.exception("settle failed repeatedly", extra={"jobs": len(items)})
            await self._lost_ownership(owner)
            return [0] * len(items), None

    async def _taken_while_settling(self, owner: str, token: str, taken: TakeResult) -> None:
        self._mark_polled()
        if taken.lost:
            await self._lost_ownership(owner)
        elif self._stop_event.is_set() and taken.jobs:  # shutdown began: start nothing new
            back = [Settlement(j.element, "requeue", take=j.take) for j in taken.jobs]
            with contextlib.suppress(*FAILURES):
                await self.queue.settle(owner, token, back)
        else:
            for job in taken.jobs:
                self._start(job, owner, token)

    # ---- background maintenance ----------------------------------------------------------------

    async def _renew_loop(self) -> None:
        interval = self.settings.lease_seconds / 3
        while True:
            await asyncio.sleep(interval)
            owner, token = self.owner, self._id.token
            try:
                ok = await self.queue.renew(owner, token, self.lease_ms)
            except FAILURES as exc:
                await self._redis_down(exc, 0)
                continue
            if not ok:
                await self._lost_ownership(owner)

    async def _reaper_loop(self) -> None:
        interval = self.settings.reaper_interval_seconds
        while True:
            await asyncio.sleep(interval * random.uniform(0.8, 1.2))
            try:
                recovered = await self.queue.reap()
            except FAILURES as exc:
                await self._redis_down(exc, 0)
                continue
            if recovered:
                self.metrics.add_recovered(recovered)
                log.warning("recovered jobs of dead workers", extra={"jobs": recovered})

    async def _depth_loop(self) -> None:
        while True:
            try:
                self._depths = await self.queue.stats()
                self.metrics.set_depths(self._depths)
            except FAILURES as exc:
                await self._redis_down(exc, 0)
            await asyncio.sleep(self.settings.depth_refresh_seconds)
