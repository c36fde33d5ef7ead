"""A real worker process for the process-level reliability tests.

Run as ``python -m tests.worker_proc`` with the worker's usual environment (REDIS_URL,
PREVIEW_*). It serves the handler ``reliability`` (the default handler unless
PREVIEW_DEFAULT_HANDLER says otherwise) and runs ``Worker.run()`` with its signal handlers, so
SIGTERM/SIGINT/SIGKILL/SIGSTOP reach a worker exactly as in production.

The handler obeys the job's ``previewRequest.metadata``:

- ``{"gate": PATH}``: block until the file PATH exists (lets a test hold a job mid-run for as
  long as it likes, then release it, without timing assumptions); with ``"gateAttempt": N``
  only attempt N waits;
- ``{"sleep": SECONDS}``: then sleep that long;
- ``{"fail": true}``: then fail the attempt (retryable); ``{"failAttempts": N}``: fail
  attempts 1..N only.

and the environment:

- ``RELIABILITY_RECORD`` (required): file to which one JSON line per event is appended:
  ``start``, ``hold``, ``finish``, ``fail``, ``cancel`` (job, attempt, pid, worker) and, once
  ``run()`` returned, ``exit`` with this process's metric counters;
- ``RELIABILITY_HOLD_AFTER=N``: after N finished jobs, every later job blocks forever (a worker
  that keeps holding jobs until it is killed);
- ``RELIABILITY_CLOCK_SKEW=SECONDS``: this process's wall clock (``time.time``) runs that far
  ahead (or behind, if negative) of the real one, like a host with a drifting clock.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import msgspec

from app.errors import ConfigError, RetryableJobError
from app.handlers import JobContext
from app.logs import configure
from app.settings import Settings
from app.worker import Worker

HANDLER = "reliability"
GATE_POLL_SECONDS = 0.01
_json = msgspec.json.Encoder()


class Recorder:
    """Appends one JSON line per event; each line is a single ``write`` on an O_APPEND fd."""

    def __init__(self, path: Path) -> None:
        self.fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def write(self, event: str, **fields: Any) -> None:
        line = _json.encode({"event": event, "pid": os.getpid(), "t": time.time(), **fields})
        os.write(self.fd, line + b"\n")

    def close(self) -> None:
        os.close(self.fd)


def _exists(path: str) -> bool:
    return os.path.exists(path)


async def wait_for_file(path: str) -> None:
    """The job's workload: block (cancellably) until ``path`` exists."""
    while True:
        if _exists(path):
            return
        await asyncio.sleep(GATE_POLL_SECONDS)


class ReliabilityHandler:
    def __init__(self, recorder: Recorder, *, hold_after: int | None) -> None:
        self.recorder = recorder
        self.hold_after = hold_after
        self.finished = 0

    async def __call__(self, ctx: JobContext) -> Mapping[str, Any]:
        meta: dict[str, Any] = ctx.job.preview_request.metadata or {}
        ids = {"job": ctx.job.job_id, "attempt": ctx.attempt, "worker": ctx.worker_id}
        self.recorder.write("start", **ids)
        try:
            if self.hold_after is not None and self.finished >= self.hold_after:
                self.recorder.write("hold", **ids)
                await asyncio.Event().wait()
            gate = meta.get("gate")
            if isinstance(gate, str) and meta.get("gateAttempt", ctx.attempt) == ctx.attempt:
                await wait_for_file(gate)
            sleep = meta.get("sleep")
            if isinstance(sleep, int | float) and sleep > 0:
                await asyncio.sleep(float(sleep))
        except asyncio.CancelledError:
            self.recorder.write("cancel", **ids)
            raise
        fail_attempts = meta.get("failAttempts")
        if meta.get("fail") is True or (
            isinstance(fail_attempts, int) and ctx.attempt <= fail_attempts
        ):
            self.recorder.write("fail", **ids)
            raise RetryableJobError("test_failure", "the job asked to fail")
        self.finished += 1
        self.recorder.write("finish", **ids)
        return {"pid": os.getpid(), "attempt": ctx.attempt, "worker": ctx.worker_id}


def counters(worker: Worker) -> dict[str, float]:
    """This process's counters, read from its metrics registry."""
    registry = worker.metrics.registry
    labels = {"queue": worker.settings.queue, "track": worker.settings.track}

    def sample(name: str, **extra: str) -> float:
        return registry.get_sample_value(name, {**labels, **extra}) or 0.0

    out = {
        outcome: sample("preview_jobs_total", outcome=outcome)
        for outcome in ("completed", "failed", "retried", "dead", "invalid")
    }
    out["recovered"] = sample("preview_jobs_recovered_total")
    out["fenced"] = sample("preview_jobs_fenced_total")
    out["redis_errors"] = sample("preview_redis_errors_total")
    return out


async def serve(settings: Settings, recorder: Recorder, hold_after: int | None) -> None:
    handler = ReliabilityHandler(recorder, hold_after=hold_after)
    worker = Worker(settings=settings, handlers={HANDLER: handler})
    await worker.run()
    recorder.write("exit", worker=worker.worker_id, counters=counters(worker))


def skew_clock(seconds: float) -> None:
    """Make every ``time.time()`` in this process (the worker's timestamps, due times and
    'now' arguments to the Lua scripts) off by ``seconds``; monotonic time is untouched."""
    real = time.time

    def skewed() -> float:
        return real() + seconds

    time.time = skewed


def main() -> int:
    record = os.environ.get("RELIABILITY_RECORD")
    if not record:
        print("worker_proc: RELIABILITY_RECORD must name the event file", file=sys.stderr)
        return 2
    hold = os.environ.get("RELIABILITY_HOLD_AFTER")
    skew = os.environ.get("RELIABILITY_CLOCK_SKEW")
    try:
        hold_after = int(hold) if hold else None
        if skew:
            skew_clock(float(skew))
        settings = Settings.from_env(
            os.environ, default_handler=os.environ.get("PREVIEW_DEFAULT_HANDLER") or HANDLER
        )
    except (ConfigError, ValueError) as exc:
        print(f"worker_proc: {exc}", file=sys.stderr)
        return 2
    configure(settings.log_level, settings.log_format)
    recorder = Recorder(Path(record))
    try:
        asyncio.run(serve(settings, recorder, hold_after))
    finally:
        recorder.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
