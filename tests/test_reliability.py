"""Process-level reliability: real worker processes (``tests.worker_proc``) against a real
redis-server, killed, stopped, signalled and cut off from Redis mid-run.

Every wait is on a condition with a deadline (``wait_for``); no test asserts how long anything
took. Jobs are held mid-run by *gates* (the handler blocks until a file exists), so "the worker
is busy with this job right now" is a fact, not a hope.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError

from app.queue import JobOptions, JobStatus, Queue, Retention
from app.settings import ENV_VARS
from tests.jobs import job
from tests.redis_server import RedisServer, free_port
from tests.tcp_proxy import CuttingProxy

ROOT = Path(__file__).resolve().parent.parent
QUEUE = "rel"
POLL = 0.02
KEEP = JobOptions(
    attempts=5,
    backoff_seconds=0.05,
    backoff_max_seconds=0.5,
    remove_on_complete=Retention(age=0, count=-1),
    remove_on_fail=Retention(age=0, count=-1),
)
"""Job options keeping every finished record, so each job's final state can be checked."""
FAST_LEASE = {"PREVIEW_LEASE_SECONDS": "1", "PREVIEW_REAPER_INTERVAL_SECONDS": "0.2"}
_PREVIEW_ENV = {var.name for var in ENV_VARS}
READONLY_REFUSALS = 60
"""How long the read-only failover lasts, counted in writes Redis refused (a few seconds)."""


# ---- helpers -----------------------------------------------------------------------------------


async def wait_for(
    check: Callable[[], bool | Awaitable[bool]],
    *,
    what: str,
    timeout: float = 20.0,
    diagnose: Callable[[], str] | None = None,
) -> None:
    """Poll ``check`` until it holds; fail after ``timeout`` seconds naming ``what``."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        ok = value if isinstance(value, bool) else await value
        if ok:
            return
        if time.monotonic() > deadline:
            detail = f"\n{diagnose()}" if diagnose is not None else ""
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}{detail}")
        await asyncio.sleep(POLL)


def read_json_lines(path: Path) -> list[dict[str, Any]]:
    """Complete JSON lines of a file being appended to (a torn last line is left out)."""
    try:
        text = path.read_bytes()
    except FileNotFoundError:
        return []
    out = []
    for line in text.split(b"\n")[:-1]:
        try:
            item = msgspec.json.decode(line)
        except msgspec.DecodeError:
            continue
        if isinstance(item, dict):
            out.append(item)
    return out


class WorkerProc:
    """One ``python -m tests.worker_proc`` process, its event record and its log."""

    def __init__(self, name: str, proc: subprocess.Popen[bytes], record: Path, log: Path):
        self.name = name
        self.proc = proc
        self.record = record
        self.log = log

    @property
    def pid(self) -> int:
        return self.proc.pid

    def events(self, kind: str | None = None, job_id: str | None = None) -> list[dict[str, Any]]:
        return [
            e
            for e in read_json_lines(self.record)
            if (kind is None or e["event"] == kind) and (job_id is None or e.get("job") == job_id)
        ]

    def ids(self, kind: str) -> list[str]:
        return [str(e["job"]) for e in self.events(kind)]

    def started(self, job_id: str) -> bool:
        return bool(self.events("start", job_id))

    def logs(self, msg: str | None = None) -> list[dict[str, Any]]:
        return [e for e in read_json_lines(self.log) if msg is None or msg in str(e.get("msg", ""))]

    def logged(self, msg: str) -> bool:
        return bool(self.logs(msg))

    def alive(self) -> bool:
        return self.proc.poll() is None

    def send(self, sig: signal.Signals) -> None:
        self.proc.send_signal(sig)

    def exit_counters(self) -> dict[str, float]:
        [exit_event] = self.events("exit")
        counters: dict[str, float] = exit_event["counters"]
        return counters

    def describe(self) -> str:
        tail = self.log.read_text(errors="replace").splitlines()[-15:] if self.log.exists() else []
        return f"--- worker {self.name} (pid {self.pid}, rc {self.proc.poll()}):\n" + "\n".join(
            tail
        )

    async def exited(self, *, timeout: float = 20.0) -> int:
        """Wait (with a deadline) for the process to end; its return code."""
        await wait_for(
            lambda: not self.alive(),
            what=f"worker {self.name} to exit",
            timeout=timeout,
            diagnose=self.describe,
        )
        rc = self.proc.returncode
        assert rc is not None
        return rc


class Workers:
    """Starts worker processes on one Redis; whatever is still running at teardown is killed."""

    def __init__(self, tmp_path: Path, server: RedisServer) -> None:
        self.dir = tmp_path / "workers"
        self.dir.mkdir()
        self.server = server
        self.procs: list[WorkerProc] = []

    def start(self, name: str, **env: str) -> WorkerProc:
        base = {k: v for k, v in os.environ.items() if k not in _PREVIEW_ENV}
        base.update(
            {
                "REDIS_URL": self.server.url,
                "PREVIEW_QUEUE": QUEUE,
                "PREVIEW_WORKER_ID": name,
                "PREVIEW_HEALTH_PORT": "0",
                "PREVIEW_WORKER_CONCURRENCY": "2",
                "PREVIEW_LOG_FORMAT": "json",
                "PREVIEW_LOG_LEVEL": "info",
                "PREVIEW_DEPTH_REFRESH_SECONDS": "60",
                "DATA_DIR": str(self.dir / "data"),
                "RELIABILITY_RECORD": str(self.dir / f"{name}.events"),
            }
        )
        base.update(env)
        log = self.dir / f"{name}.log"
        with log.open("wb") as err:
            proc = subprocess.Popen(
                [sys.executable, "-m", "tests.worker_proc"],
                cwd=ROOT,
                env=base,
                stdin=subprocess.DEVNULL,
                stdout=err,
                stderr=err,
            )
        worker = WorkerProc(name, proc, Path(base["RELIABILITY_RECORD"]), log)
        self.procs.append(worker)
        return worker

    def describe(self) -> str:
        return "\n".join(w.describe() for w in self.procs)

    def finishes(self) -> Counter[str]:
        """How many times each job's handler ran to its end, over every worker."""
        return Counter(job_id for w in self.procs for job_id in w.ids("finish"))

    def close(self) -> None:
        for worker in self.procs:
            if worker.alive():
                worker.proc.kill()  # works on a SIGSTOPped process too
            worker.proc.wait(timeout=10)


@pytest.fixture
def workers(tmp_path: Path, redis_server: RedisServer) -> Iterator[Workers]:
    spawner = Workers(tmp_path, redis_server)
    try:
        yield spawner
    finally:
        spawner.close()


@pytest.fixture
def queue(redis_client: aioredis.Redis) -> Queue:
    return Queue(redis_client, name=QUEUE, defaults=KEEP)


async def status_of(queue: Queue, job_id: str) -> JobStatus:
    status = await queue.status(job_id)
    assert status is not None, f"job {job_id} has no record"
    return status


async def states(queue: Queue, job_ids: list[str]) -> list[str | None]:
    pipe = queue.redis.pipeline(transaction=False)
    for job_id in job_ids:
        pipe.hget(queue.keys.job(job_id), "state")
    raw: list[bytes | None] = await pipe.execute()
    return [None if r is None else r.decode() for r in raw]


async def all_completed(queue: Queue, job_ids: list[str]) -> bool:
    try:
        found = await states(queue, job_ids)
    except RedisConnectionError:  # the test's own connection died with a restarted server
        return False
    return all(s == "completed" for s in found)


async def lease_exists(queue: Queue, owner: str) -> bool:
    return bool(await queue.redis.exists(queue.keys.lease(owner)))


async def owners(queue: Queue) -> set[str]:
    members = await queue.redis.smembers(queue.keys.workers)
    return {m.decode() if isinstance(m, bytes) else m for m in members}


async def readonly_refusals(client: aioredis.Redis) -> int:
    """How many commands Redis refused with READONLY (INFO errorstats)."""
    info = await client.info("errorstats")
    stat = info.get("errorstat_READONLY")
    return int(stat["count"]) if isinstance(stat, dict) else 0


def gated(job_id: str, gate: Path, **meta: Any) -> dict[str, Any]:
    return job(job_id, metadata={"gate": str(gate), **meta})


# ---- 1. SIGKILL mid-job ------------------------------------------------------------------------


async def test_sigkill_mid_job_another_worker_recovers_and_completes_it_once(
    workers: Workers, queue: Queue, tmp_path: Path
) -> None:
    gate = tmp_path / "gate"
    a = workers.start("A", **FAST_LEASE)
    await queue.enqueue(gated("k1", gate))
    await wait_for(lambda: a.started("k1"), what="A to start k1", diagnose=workers.describe)

    a.proc.kill()
    assert await a.exited() == -signal.SIGKILL
    gate.touch()
    b = workers.start("B", **FAST_LEASE)

    async def completed() -> bool:
        return (await status_of(queue, "k1")).state == "completed"

    await wait_for(completed, what="k1 completed by B", diagnose=workers.describe)
    status = await status_of(queue, "k1")
    assert status.recovered == 1
    assert status.attempts == 2
    assert status.result == {"pid": b.pid, "attempt": 2, "worker": "B"}
    assert workers.finishes() == Counter({"k1": 1})
    assert [e["event"] for e in a.events()] == ["start"]
    assert not await lease_exists(queue, "A")
    assert "A" not in await owners(queue)

    b.send(signal.SIGTERM)
    assert await b.exited() == 0
    counters = b.exit_counters()
    assert (counters["completed"], counters["recovered"], counters["fenced"]) == (1, 1, 0)
    assert b.logged("recovered jobs of dead workers")


# ---- 2-4. SIGTERM / SIGINT ---------------------------------------------------------------------


async def test_sigterm_drains_in_flight_job_within_grace_and_fetches_nothing_new(
    workers: Workers, queue: Queue, tmp_path: Path
) -> None:
    gate = tmp_path / "gate"
    a = workers.start("A", PREVIEW_WORKER_CONCURRENCY="1", PREVIEW_SHUTDOWN_GRACE_SECONDS="60")
    # a worker that has already been idle once (as every worker in production has)
    await queue.enqueue(job("d0"))
    await wait_for(lambda: all_completed(queue, ["d0"]), what="d0", diagnose=a.describe)
    await queue.enqueue(gated("d1", gate))
    await queue.enqueue(job("d2"))
    await wait_for(lambda: a.started("d1"), what="A to start d1", diagnose=workers.describe)

    a.send(signal.SIGTERM)
    await wait_for(lambda: a.logged("draining in-flight jobs"), what="A to begin draining")
    gate.touch()  # the in-flight job may now finish, well within the grace
    assert await a.exited(timeout=30) == 0, a.describe()

    d1 = await status_of(queue, "d1")
    assert (d1.state, d1.attempts, d1.result) == (
        "completed",
        1,
        {"pid": a.pid, "attempt": 1, "worker": "A"},
    )
    assert [e["event"] for e in a.events(job_id="d1")] == ["start", "finish"]
    # stopped fetching: d2 was never started and is still waiting, its attempt not consumed
    assert not a.started("d2")
    d2 = await status_of(queue, "d2")
    assert (d2.state, d2.attempts) == ("waiting", 0)
    assert not await lease_exists(queue, "A")
    assert await owners(queue) == set()
    assert not a.logged("grace period over")
    assert a.exit_counters()["completed"] == 2


async def test_sigterm_past_the_grace_gives_the_job_back_at_once(
    workers: Workers, queue: Queue, tmp_path: Path
) -> None:
    gate = tmp_path / "gate"
    # the lease (30 s) outlives the test's wait: only an explicit give-back can explain 'waiting'
    a = workers.start("A", PREVIEW_SHUTDOWN_GRACE_SECONDS="0.5", PREVIEW_LEASE_SECONDS="30")
    await queue.enqueue(gated("g1", gate))
    await wait_for(lambda: a.started("g1"), what="A to start g1", diagnose=workers.describe)

    a.send(signal.SIGTERM)
    assert await a.exited(timeout=20) == 0, a.describe()
    assert a.logged("grace period over: giving jobs back")
    assert [e["event"] for e in a.events(job_id="g1")] == ["start", "cancel"]
    status = await status_of(queue, "g1")
    assert (status.state, status.attempts, status.recovered) == ("waiting", 0, 0)
    assert not await lease_exists(queue, "A")
    assert await queue.active_elements("A") == []
    assert await owners(queue) == set()
    assert b"g1" in await queue.redis.lrange(queue.keys.wait("normal"), 0, -1)

    gate.touch()
    b = workers.start("B")

    async def completed() -> bool:
        return (await status_of(queue, "g1")).state == "completed"

    await wait_for(completed, what="B to complete g1", diagnose=workers.describe)
    status = await status_of(queue, "g1")
    assert (status.attempts, status.recovered) == (1, 0)
    assert status.result == {"pid": b.pid, "attempt": 1, "worker": "B"}
    assert workers.finishes() == Counter({"g1": 1})


async def test_second_signal_skips_the_grace_wait(
    workers: Workers, queue: Queue, tmp_path: Path
) -> None:
    gate = tmp_path / "gate"  # never opened: the handler is still blocked when the worker exits
    a = workers.start("A", PREVIEW_SHUTDOWN_GRACE_SECONDS="600", PREVIEW_LEASE_SECONDS="60")
    await queue.enqueue(gated("s1", gate))
    await wait_for(lambda: a.started("s1"), what="A to start s1", diagnose=workers.describe)

    a.send(signal.SIGTERM)
    await wait_for(lambda: a.logged("draining in-flight jobs"), what="A to drain")
    a.send(signal.SIGINT)
    # the deadline is far below the 600 s grace: only the second signal can end the wait
    assert await a.exited(timeout=30) == 0, a.describe()
    assert a.logged("second shutdown request")
    assert [e["event"] for e in a.events(job_id="s1")] == ["start", "cancel"]
    status = await status_of(queue, "s1")
    assert (status.state, status.attempts) == ("waiting", 0)
    assert not await lease_exists(queue, "A")
    assert not gate.exists()


# ---- 5. frozen event loop ----------------------------------------------------------------------


async def test_frozen_worker_is_fenced_after_its_job_was_recovered(
    workers: Workers, queue: Queue, tmp_path: Path
) -> None:
    gate = tmp_path / "gate"
    a = workers.start("A", PREVIEW_WORKER_CONCURRENCY="1", **FAST_LEASE)
    await queue.enqueue(gated("f1", gate))
    await wait_for(lambda: a.started("f1"), what="A to start f1", diagnose=workers.describe)

    a.send(signal.SIGSTOP)  # a frozen event loop: alive, holding f1, renewing nothing
    try:
        b = workers.start("B", **FAST_LEASE)
        await wait_for(lambda: b.started("f1"), what="B to recover f1", diagnose=workers.describe)
        gate.touch()

        async def completed() -> bool:
            return (await status_of(queue, "f1")).state == "completed"

        await wait_for(completed, what="B to complete f1", diagnose=workers.describe)
    finally:
        a.send(signal.SIGCONT)

    await wait_for(
        lambda: any(e.get("job") == "f1" for e in a.logs("settlement refused")),
        what="A's late settlement of f1 to be fenced",
        diagnose=workers.describe,
    )
    assert a.logged("lease lost")
    status = await status_of(queue, "f1")
    assert (status.state, status.recovered, status.attempts) == ("completed", 1, 2)
    assert status.result == {"pid": b.pid, "attempt": 2, "worker": "B"}
    assert b.ids("finish") == ["f1"]
    assert a.alive()

    b.send(signal.SIGTERM)
    assert await b.exited() == 0
    # A serves on under a new identity
    await queue.enqueue(job("f2"))

    async def f2_done() -> bool:
        return (await status_of(queue, "f2")).state == "completed"

    await wait_for(f2_done, what="A to complete f2", diagnose=workers.describe)
    assert (await status_of(queue, "f2")).result == {"pid": a.pid, "attempt": 1, "worker": "A"}
    live = await owners(queue)
    assert "A" not in live
    assert any(owner.startswith("A.g") for owner in live), live
    a.send(signal.SIGTERM)
    assert await a.exited() == 0
    counters = a.exit_counters()
    assert counters["fenced"] >= 1
    assert counters["completed"] == 1  # f2 only
    assert (await status_of(queue, "f1")).result == status.result


# ---- 6. Redis outage ---------------------------------------------------------------------------


async def test_redis_killed_and_restarted_mid_run_loses_nothing(
    workers: Workers, queue: Queue, redis_server: RedisServer, tmp_path: Path
) -> None:
    gate1, gate2 = tmp_path / "gate1", tmp_path / "gate2"
    ids = [f"r{i:03d}" for i in range(300)]
    payloads = []
    for i, job_id in enumerate(ids):
        meta: dict[str, Any] = {"sleep": 0.002}
        if i >= 100:
            meta["gate"] = str(gate1 if i < 200 else gate2)
        payloads.append(job(job_id, metadata=meta))
    assert all(not isinstance(r, Exception) for r in await queue.enqueue_many(payloads))
    a = workers.start("A", PREVIEW_WORKER_CONCURRENCY="4", PREVIEW_LEASE_SECONDS="10")

    def finished() -> int:
        return len(a.events("finish"))

    # outage 1: Redis dies while jobs flow; it comes back once the worker has noticed
    await wait_for(lambda: finished() >= 40, what="40 jobs done", diagnose=a.describe)
    redis_server.kill()
    await wait_for(lambda: a.logged("redis unavailable"), what="A to notice the outage")
    redis_server.start()
    gate1.touch()
    # outage 2: an immediate restart, with gated jobs in flight and more waiting
    await wait_for(lambda: finished() >= 150, what="150 jobs done", diagnose=a.describe)
    redis_server.restart()
    gate2.touch()

    await wait_for(
        lambda: all_completed(queue, ids),
        what="all 300 jobs completed",
        timeout=60,
        diagnose=a.describe,
    )
    finishes = workers.finishes()
    assert {job_id: n for job_id, n in finishes.items() if n != 1} == {}
    assert set(finishes) == set(ids)
    stats = await queue.stats()
    assert (stats["completed"], stats["waiting"], stats["active"], stats["dead"]) == (300, 0, 0, 0)
    assert a.alive()
    assert a.logged("redis reachable again")

    a.send(signal.SIGTERM)
    assert await a.exited() == 0
    assert a.exit_counters()["redis_errors"] >= 1


# ---- 7. many workers, many reapers -------------------------------------------------------------


async def test_many_workers_and_reapers_one_killed_every_job_completed_once(
    workers: Workers, queue: Queue
) -> None:
    ids = [f"m{i:03d}" for i in range(200)]
    await queue.enqueue_many(job(job_id, metadata={"sleep": 0.005}) for job_id in ids)
    # W1 alone first: it completes 5 jobs, then holds the next ones until it is killed
    w1 = workers.start("W1", RELIABILITY_HOLD_AFTER="5", **FAST_LEASE)

    def settled_down() -> bool:
        # two jobs held (concurrency 2) and every other job W1 started has finished
        holding = w1.ids("hold")
        return len(holding) == 2 and set(w1.ids("start")) == set(w1.ids("finish")) | set(holding)

    await wait_for(settled_down, what="W1 to hold 2 jobs", diagnose=w1.describe)
    held, w1_done = w1.ids("hold"), w1.ids("finish")
    await wait_for(lambda: all_completed(queue, w1_done), what="W1's finished jobs settled")

    others = [workers.start(name, **FAST_LEASE) for name in ("W2", "W3", "W4")]

    def others_finished() -> int:
        return sum(len(w.events("finish")) for w in others)

    await wait_for(lambda: others_finished() >= 30, what="W2-W4 running", diagnose=workers.describe)
    w1.proc.kill()
    assert await w1.exited() == -signal.SIGKILL
    await wait_for(
        lambda: all_completed(queue, ids),
        what="all 200 jobs completed",
        timeout=60,
        diagnose=workers.describe,
    )

    finishes = workers.finishes()
    assert {job_id: n for job_id, n in finishes.items() if n != 1} == {}
    assert set(finishes) == set(ids)
    finisher = {job_id: w.pid for w in workers.procs for job_id in w.ids("finish")}
    for job_id in ids:
        status = await status_of(queue, job_id)
        assert status.result is not None
        assert status.result["pid"] == finisher[job_id], job_id
    for job_id in held:
        status = await status_of(queue, job_id)
        assert (status.recovered, status.attempts) == (1, 2), job_id
        assert finisher[job_id] != w1.pid

    for w in others:
        w.send(signal.SIGTERM)
    for w in others:
        assert await w.exited() == 0
    totals = Counter[str]()
    for w in others:
        totals.update(w.exit_counters())
    assert totals["completed"] == len(ids) - len(w1_done)
    assert totals["recovered"] == 2
    assert totals["fenced"] == 0
    assert await owners(queue) == set()


async def test_workers_killed_again_and_again_lose_nothing(workers: Workers, queue: Queue) -> None:
    """A worker may die at any instant: five SIGKILLs while jobs flow (each victim replaced),
    and still every job completes, and no completion is counted twice."""
    ids = [f"c{i:03d}" for i in range(240)]
    await queue.enqueue_many(job(job_id, metadata={"sleep": 0.03}) for job_id in ids)
    live = [workers.start(f"C{n}", **FAST_LEASE) for n in range(3)]
    killed: list[WorkerProc] = []

    def finished(at_least: int) -> Callable[[], bool]:
        return lambda: sum(workers.finishes().values()) >= at_least

    for kill in range(5):
        target = 40 * (kill + 1)
        await wait_for(finished(target), what=f"{target} jobs done", diagnose=workers.describe)
        victim = live.pop(0)
        victim.proc.kill()
        assert await victim.exited() == -signal.SIGKILL
        killed.append(victim)
        live.append(workers.start(f"C{3 + kill}", **FAST_LEASE))

    await wait_for(
        lambda: all_completed(queue, ids),
        what="all 240 jobs completed",
        timeout=60,
        diagnose=workers.describe,
    )
    for w in live:
        w.send(signal.SIGTERM)
    for w in live:
        assert await w.exited() == 0, w.describe()

    finishers: dict[str, set[int]] = {}
    for w in workers.procs:
        for job_id in w.ids("finish"):
            finishers.setdefault(job_id, set()).add(w.pid)
    completed_by: Counter[int] = Counter()
    recovered = 0
    for job_id in ids:
        status = await status_of(queue, job_id)
        assert status.result is not None
        assert status.result["pid"] in finishers[job_id], job_id
        completed_by[status.result["pid"]] += 1
        recovered += status.recovered
    assert recovered >= 1  # the kills did hit jobs in flight
    # the survivors counted exactly the completions recorded under their pid
    for w in live:
        counters = w.exit_counters()
        assert counters["completed"] == completed_by[w.pid], w.name
        assert counters["fenced"] == 0, w.name
    assert sum(completed_by.values()) == len(ids)
    assert (await queue.stats())["active"] == 0


# ---- 8. a reply lost in flight -----------------------------------------------------------------


async def test_take_whose_reply_is_lost_strands_no_job(
    workers: Workers, queue: Queue, redis_server: RedisServer
) -> None:
    """Failover/blip: the take ran in Redis (the job moved into the worker's active list) but
    the reply never arrived. The worker must give that job back or run it, not leave it held
    under a lease it keeps renewing."""
    proxy = await CuttingProxy(redis_server.port).start()
    try:
        a = workers.start("A", REDIS_URL=proxy.url, PREVIEW_WORKER_CONCURRENCY="1", **FAST_LEASE)
        await wait_for(lambda: a.logged("worker started"), what="A to start", diagnose=a.describe)
        cut = proxy.cut_reply_containing(b"lost-1")
        await queue.enqueue(job("lost-1"))
        await queue.enqueue(job("lost-2"))
        await wait_for(cut.is_set, what="the take reply of lost-1 to be cut")

        async def report() -> str:
            held = await queue.active_elements("A")
            return f"A holds {held}; states {await states(queue, ['lost-1', 'lost-2'])}"

        seen: list[str] = []

        async def done() -> bool:
            seen[:] = [await report()]
            return await all_completed(queue, ["lost-1", "lost-2"])

        # far beyond lease (1 s) + reaper interval (0.2 s): a stranded job never completes
        await wait_for(
            done,
            what="both jobs completed",
            timeout=15,
            diagnose=lambda: "\n".join(seen) + "\n" + a.describe(),
        )
        assert workers.finishes() == Counter({"lost-1": 1, "lost-2": 1})
        assert a.alive()
        a.send(signal.SIGTERM)
        assert await a.exited() == 0
    finally:
        await proxy.close()


async def test_lost_reply_of_a_settle_and_take_while_saturated_strands_no_job(
    workers: Workers, queue: Queue, redis_server: RedisServer
) -> None:
    """A saturated worker takes its next job in the settle call. If that reply is lost, the job
    sits in the worker's active list under a lease it keeps renewing; it must be given back
    while jobs keep flowing (the fetch loop stays parked all that time), not only once the
    queue runs dry."""
    proxy = await CuttingProxy(redis_server.port).start()
    try:
        a = workers.start("A", REDIS_URL=proxy.url, PREVIEW_WORKER_CONCURRENCY="1", **FAST_LEASE)
        await wait_for(lambda: a.logged("worker started"), what="A to start", diagnose=a.describe)
        busy = {"sleep": 0.1}  # each job keeps the only slot busy for a while
        await queue.enqueue(job("flow-0", metadata=busy))
        await wait_for(lambda: a.started("flow-0"), what="A to start flow-0", diagnose=a.describe)
        cut = proxy.cut_reply_containing(b"strand-me")
        await queue.enqueue(job("strand-me"))  # taken with flow-0's settlement
        produced = 1

        async def flowing_until_done() -> bool:
            nonlocal produced
            # keep the worker saturated: the queue never runs dry while we wait
            stats = await queue.stats()
            if stats["waiting"] < 3:
                for _ in range(3):
                    await queue.enqueue(job(f"flow-{produced}", metadata=busy))
                    produced += 1
            return await all_completed(queue, ["strand-me"])

        await wait_for(cut.is_set, what="the settle-and-take reply of strand-me to be cut")
        await wait_for(
            flowing_until_done,
            what="strand-me completed while jobs keep flowing",
            timeout=20,
            diagnose=a.describe,
        )
        assert workers.finishes()["strand-me"] == 1
        a.send(signal.SIGTERM)
        assert await a.exited() == 0
    finally:
        await proxy.close()


async def test_failed_resync_after_a_lost_take_reply_is_retried(
    workers: Workers, queue: Queue, redis_server: RedisServer
) -> None:
    """As above, and the first look at the active list (which finds the orphan) fails too,
    while the next take goes through: the orphan must still be given back."""
    proxy = await CuttingProxy(redis_server.port).start()
    try:
        a = workers.start("A", REDIS_URL=proxy.url, PREVIEW_WORKER_CONCURRENCY="1", **FAST_LEASE)
        await wait_for(lambda: a.logged("worker started"), what="A to start", diagnose=a.describe)
        # the resync's read of the active list fails once, the take's reply is lost
        resync_cut = proxy.cut_request_containing(b"$6\r\nLRANGE\r\n")
        take_cut = proxy.cut_reply_containing(b"strand-1")
        await queue.enqueue(job("strand-1"))
        await queue.enqueue(job("strand-2"))
        await wait_for(take_cut.is_set, what="the take reply of strand-1 to be cut")
        await wait_for(resync_cut.is_set, what="the resync to be cut")

        async def report() -> str:
            held = await queue.active_elements("A")
            return f"A holds {held}; states {await states(queue, ['strand-1', 'strand-2'])}"

        seen: list[str] = []

        async def done() -> bool:
            seen[:] = [await report()]
            return await all_completed(queue, ["strand-1", "strand-2"])

        # far beyond lease (1 s) + reaper interval (0.2 s): a stranded job never completes
        await wait_for(
            done,
            what="both jobs completed",
            timeout=15,
            diagnose=lambda: "\n".join(seen) + "\n" + a.describe(),
        )
        assert workers.finishes() == Counter({"strand-1": 1, "strand-2": 1})
        a.send(signal.SIGTERM)
        assert await a.exited() == 0
    finally:
        await proxy.close()


# ---- 9. failover: Redis read-only for longer than the lease ------------------------------------


async def test_redis_read_only_longer_than_the_lease_worker_survives_and_loses_nothing(
    workers: Workers, queue: Queue, redis_client: aioredis.Redis, tmp_path: Path
) -> None:
    """What a worker sees during a failover: its Redis turns into a replica (every write is
    refused with READONLY) for longer than the lease, then becomes a primary again. The worker
    must neither crash nor stop serving, and every job must complete (a job finished while
    writes were refused may run again: at-least-once)."""
    gate = tmp_path / "gate"
    ids = [f"ro{i:02d}" for i in range(20)]
    await queue.enqueue_many(gated(job_id, gate) for job_id in ids)
    a = workers.start("A", **FAST_LEASE)
    await wait_for(
        lambda: len(a.events("start")) == 2, what="A to hold 2 jobs", diagnose=a.describe
    )

    # a replica of a primary that does not exist: keeps its data, refuses writes
    await redis_client.replicaof("127.0.0.1", free_port())
    try:
        gate.touch()  # the jobs in flight finish while their settlement is refused

        async def lease_lapsed() -> bool:
            return not await lease_exists(queue, "A")

        await wait_for(lease_lapsed, what="A's lease to lapse while read-only", diagnose=a.describe)
        # a failover of several seconds: Redis keeps refusing the worker's writes for a while

        async def refused_long() -> bool:
            assert a.alive(), "the worker stopped during the failover\n" + a.describe()
            return await readonly_refusals(redis_client) >= READONLY_REFUSALS

        await wait_for(
            refused_long, what=f"{READONLY_REFUSALS} refused writes", diagnose=a.describe
        )
    finally:
        await redis_client.replicaof("NO", "ONE")

    await wait_for(
        lambda: all_completed(queue, ids),
        what="every job completed after the failover",
        timeout=30,
        diagnose=a.describe,
    )
    assert a.alive(), a.describe()
    finishes = workers.finishes()
    assert set(finishes) == set(ids)
    assert max(finishes.values()) <= 2
    a.send(signal.SIGTERM)
    assert await a.exited() == 0, a.describe()
    # one lease lost, one new identity: an identity that is still being registered is not
    # itself declared lost (and replaced again) by a loop that looked too early
    lost = a.logs("lease lost")
    assert [e["owner"] for e in lost] == ["A"], lost


async def test_settle_whose_reply_is_lost_counts_one_completion_and_no_fencing(
    workers: Workers, queue: Queue, redis_server: RedisServer
) -> None:
    """The completion ran in Redis but its reply was lost; the worker sends it again. That
    retry must be recognised as already applied: one completion counted, nothing 'fenced'
    (preview_jobs_fenced_total means another worker owns the job, and alerts on it)."""
    proxy = await CuttingProxy(redis_server.port).start()
    try:
        a = workers.start("A", REDIS_URL=proxy.url, **FAST_LEASE)
        # a first job loads the settle script, so the cut hits a settlement that runs
        await queue.enqueue(job("warm-up"))
        await wait_for(
            lambda: all_completed(queue, ["warm-up"]), what="warm-up", diagnose=a.describe
        )
        # the only request carrying the job id is the settlement (take sends owner and token)
        cut = proxy.cut_reply_to_request_containing(b"settled-once")
        await queue.enqueue(job("settled-once"))
        await wait_for(cut.is_set, what="the settle reply to be cut", diagnose=a.describe)

        async def completed() -> bool:
            return (await status_of(queue, "settled-once")).state == "completed"

        await wait_for(completed, what="the job completed", diagnose=a.describe)
        await wait_for(
            lambda: a.logged("redis reachable again"), what="A to retry", diagnose=a.describe
        )
        assert workers.finishes() == Counter({"warm-up": 1, "settled-once": 1})
        a.send(signal.SIGTERM)
        assert await a.exited() == 0
        assert not a.logged("settlement refused"), a.describe()
        counters = a.exit_counters()
        assert (counters["completed"], counters["fenced"]) == (2, 0), counters
    finally:
        await proxy.close()


# ---- 10. shutdown while Redis is away ----------------------------------------------------------


async def test_sigterm_during_a_redis_outage_exits_0_and_loses_nothing(
    workers: Workers, queue: Queue, redis_server: RedisServer, tmp_path: Path
) -> None:
    gate = tmp_path / "gate"
    a = workers.start(
        "A",
        PREVIEW_SHUTDOWN_GRACE_SECONDS="1",
        PREVIEW_WORKER_CONCURRENCY="1",
        PREVIEW_LEASE_SECONDS="2",
    )
    await queue.enqueue(gated("o1", gate))
    await queue.enqueue(job("o2"))
    await wait_for(lambda: a.started("o1"), what="A to start o1", diagnose=a.describe)

    redis_server.kill()
    gate.touch()  # o1 finishes while its settlement cannot be written
    await wait_for(lambda: a.logged("redis unavailable"), what="A to notice", diagnose=a.describe)
    a.send(signal.SIGTERM)
    # grace 1 s plus the bounded give-back steps; far below it would hang on a dead Redis
    assert await a.exited(timeout=45) == 0, a.describe()

    redis_server.start()
    b = workers.start("B", **FAST_LEASE)
    await wait_for(
        lambda: all_completed(queue, ["o1", "o2"]),
        what="o1 and o2 completed after Redis returned",
        diagnose=workers.describe,
    )
    # o1 ran to its end on A, but only B's completion was recorded (at-least-once)
    assert workers.finishes() == Counter({"o1": 2, "o2": 1})
    o1 = await status_of(queue, "o1")
    assert o1.result == {"pid": b.pid, "attempt": 2, "worker": "B"}
    assert o1.recovered == 1


async def test_sigterm_while_waiting_for_redis_at_start_exits_0(workers: Workers) -> None:
    a = workers.start("A", REDIS_URL=f"redis://127.0.0.1:{free_port()}/0")
    await wait_for(lambda: a.logged("redis unavailable"), what="A to wait for Redis")
    a.send(signal.SIGTERM)
    assert await a.exited() == 0, a.describe()
    assert a.events("start") == []


async def test_a_retried_stale_settlement_does_not_hit_the_next_attempt(
    workers: Workers, queue: Queue, redis_server: RedisServer, tmp_path: Path
) -> None:
    """Attempt 1 fails; its 'retry' settlement runs but the reply is lost, and the worker's
    resends are refused for a while. Meanwhile the job falls due and the same worker takes it
    again (attempt 2). When a resend of attempt 1's settlement finally goes through it must not
    apply to attempt 2 (removing it from the active list and re-scheduling the job while attempt
    2 still runs: a concurrent duplicate run)."""
    gate = tmp_path / "gate"
    proxy = await CuttingProxy(redis_server.port).start()
    try:
        a = workers.start("A", REDIS_URL=proxy.url, **FAST_LEASE)
        await queue.enqueue(job("warm-up"))  # loads the scripts
        await wait_for(
            lambda: all_completed(queue, ["warm-up"]), what="warm-up", diagnose=a.describe
        )
        cut = proxy.cut_reply_to_request_containing(b"stale", then_block=True)
        meta = {"failAttempts": 1, "gate": str(gate), "gateAttempt": 2}
        await queue.enqueue(
            job("stale", metadata=meta), options=msgspec.structs.replace(KEEP, backoff_seconds=0)
        )
        await wait_for(cut.is_set, what="attempt 1's settlement reply cut", diagnose=a.describe)
        await wait_for(proxy.request.fired.is_set, what="a resend refused", diagnose=a.describe)

        def attempts() -> list[int]:
            return [int(e["attempt"]) for e in a.events("start", "stale")]

        await wait_for(lambda: attempts() == [1, 2], what="attempt 2 running", diagnose=a.describe)
        reconnects = len(a.logs("redis reachable again"))
        proxy.unblock_requests()
        await wait_for(
            lambda: len(a.logs("redis reachable again")) > reconnects,
            what="the resend to go through",
            diagnose=a.describe,
        )
        gate.touch()

        async def settled() -> bool:
            stats = await queue.stats()
            done = (await status_of(queue, "stale")).state == "completed"
            return done and (stats["active"], stats["waiting"], stats["delayed"]) == (0, 0, 0)

        await wait_for(settled, what="the job completed and the queue idle", diagnose=a.describe)
        a.send(signal.SIGTERM)
        assert await a.exited() == 0
        assert attempts() == [1, 2], a.describe()
        status = await status_of(queue, "stale")
        assert status.result == {"pid": a.pid, "attempt": 2, "worker": "A"}
        assert a.exit_counters()["fenced"] == 0
    finally:
        await proxy.close()


# ---- 11. clocks --------------------------------------------------------------------------------


async def command_calls(client: aioredis.Redis, command: str) -> int:
    """How many times Redis ran ``command`` (scripts' calls included), from INFO commandstats."""
    stat = (await client.info("commandstats")).get(f"cmdstat_{command}")
    return int(stat["calls"]) if isinstance(stat, dict) else 0


async def test_skewed_client_clocks_do_not_move_ownership(
    workers: Workers, queue: Queue, redis_client: aioredis.Redis, tmp_path: Path
) -> None:
    """Ownership lives in Redis TTLs: a live owner whose clock runs an hour behind keeps its
    job while a reaper whose clock runs an hour ahead looks at it again and again."""
    gate = tmp_path / "gate"
    a = workers.start("A", RELIABILITY_CLOCK_SKEW="-3600", **FAST_LEASE)
    await queue.enqueue(gated("clock", gate))
    await wait_for(lambda: a.started("clock"), what="A to start the job", diagnose=a.describe)
    b = workers.start("B", RELIABILITY_CLOCK_SKEW="3600", **FAST_LEASE)
    await wait_for(lambda: b.logged("worker started"), what="B to start", diagnose=b.describe)

    # every reap reads the owner set once (SMEMBERS): let the reapers look 25 times, which
    # spans several 1 s leases at their 0.2 s interval
    looked = await command_calls(redis_client, "smembers")

    async def reaped_often() -> bool:
        return await command_calls(redis_client, "smembers") >= looked + 25

    await wait_for(reaped_often, what="25 reaper passes", diagnose=workers.describe)
    status = await status_of(queue, "clock")
    assert (status.state, status.worker, status.recovered) == ("active", "A", 0)
    assert not b.started("clock")

    gate.touch()

    async def completed() -> bool:
        return (await status_of(queue, "clock")).state == "completed"

    await wait_for(completed, what="A to complete the job", diagnose=workers.describe)
    status = await status_of(queue, "clock")
    assert (status.recovered, status.attempts) == (0, 1)
    assert status.result == {"pid": a.pid, "attempt": 1, "worker": "A"}


async def test_retry_delay_does_not_depend_on_the_failing_workers_clock(
    workers: Workers, queue: Queue, tmp_path: Path
) -> None:
    """A retry due 'now' must be due now for every worker, even when the worker that failed the
    attempt has a clock ten minutes ahead (due times computed from client clocks are only as
    good as the worst clock; Redis' TIME is one clock for all)."""
    gate = tmp_path / "gate"
    a = workers.start("A", RELIABILITY_CLOCK_SKEW="600", PREVIEW_SHUTDOWN_GRACE_SECONDS="60")
    meta = {"failAttempts": 1, "gate": str(gate), "gateAttempt": 1}
    await queue.enqueue(
        job("skewed", metadata=meta), options=msgspec.structs.replace(KEEP, backoff_seconds=0)
    )
    await wait_for(lambda: a.started("skewed"), what="A to start attempt 1", diagnose=a.describe)
    a.send(signal.SIGTERM)  # A drains: it finishes attempt 1 (a failure) and fetches nothing
    await wait_for(lambda: a.logged("draining in-flight jobs"), what="A to drain")
    gate.touch()
    assert await a.exited() == 0, a.describe()
    assert [e["event"] for e in a.events(job_id="skewed")] == ["start", "fail"]

    b = workers.start("B")

    async def completed() -> bool:
        return (await status_of(queue, "skewed")).state == "completed"

    # a 0 s backoff: B retries at once, not when A's clock says so (ten minutes on)
    await wait_for(completed, what="B to run the retry", diagnose=workers.describe)
    status = await status_of(queue, "skewed")
    assert status.result == {"pid": b.pid, "attempt": 2, "worker": "B"}


# ---- 12. Redis before 6.2 ----------------------------------------------------------------------


async def test_redis_before_6_2_blocks_with_brpoplpush(
    workers: Workers, queue: Queue, redis_server: RedisServer, redis_client: aioredis.Redis
) -> None:
    """Without BLMOVE (Redis < 6.2) the idle worker blocks with BRPOPLPUSH and still wakes for
    new work. The server here is newer; the proxy makes the worker believe it is a 6.0."""
    info = await redis_client.info("server")
    actual = ".".join(str(info["redis_version"]).split(".")[:2])
    proxy = await CuttingProxy(redis_server.port).start()
    try:
        proxy.pretend_redis_version("6.0", actual=actual)
        a = workers.start("A", REDIS_URL=proxy.url)
        await wait_for(lambda: a.logged("worker started"), what="A to start", diagnose=a.describe)

        async def blocked_the_old_way() -> bool:
            return await command_calls(redis_client, "brpoplpush") >= 1

        await wait_for(blocked_the_old_way, what="A to block with BRPOPLPUSH", diagnose=a.describe)
        await queue.enqueue(job("legacy-1"))
        await wait_for(
            lambda: all_completed(queue, ["legacy-1"]), what="the job served", diagnose=a.describe
        )
        assert await command_calls(redis_client, "blmove") == 0
        a.send(signal.SIGTERM)
        assert await a.exited() == 0
    finally:
        await proxy.close()
