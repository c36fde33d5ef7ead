"""Smoke test of the queue bench: tiny runs of preview-worker only (no peers, no pinning).

Checks that the bench's counters agree with each other and with Redis, never timings.
"""

from __future__ import annotations

import pytest

from bench.queue_bench import HIGH, LOW, Config, main, run_bench
from bench.report import render
from tests.redis_server import RedisServer

JOBS = 60
ENQUEUE_JOBS = 20
LATENCY_RATE = 100.0
LATENCY_SECONDS = 0.3
WARMUP_SECONDS = 0.2


def test_queue_bench_counters_agree(redis_server: RedisServer) -> None:
    cfg = Config(
        jobs=JOBS,
        enqueue_jobs=ENQUEUE_JOBS,
        rounds=1,
        latency_rate=LATENCY_RATE,
        latency_seconds=LATENCY_SECONDS,
        latency_warmup_seconds=WARMUP_SECONDS,
        systems=("preview-worker",),
        pin=False,
        redis_url=redis_server.url,
        timeout=120,
    )
    report = run_bench(cfg, log=lambda line: None)
    pw = report.results["preview-worker"]
    assert pw.problems == []
    assert pw.duplicates == 0
    assert len(pw.enqueue_single) == 1
    assert len(pw.enqueue_batched) == 2  # one prefill per concurrency

    for concurrency in (LOW, HIGH):
        phase = pw.best(concurrency)
        assert phase is not None
        assert phase.jobs == JOBS
        calls = phase.calls
        # settlements: one call per job at concurrency 1 (a settle, or a settle_and_take that
        # also takes the next job); batched (fewer calls) at 64
        combined = calls.get("settle_and_take", 0)
        settles = calls.get("settle", 0) + combined
        takes = calls.get("take", 0) + combined
        if concurrency == LOW:
            assert settles == JOBS
            assert takes >= JOBS
            assert combined > 0  # steady state: settle and take share one round trip
        else:
            assert 1 <= settles <= JOBS
            assert takes >= 1
        # each take and settle ran one script on the server; no script ran that the worker's
        # Queue calls (plus the runner's one final stats read) do not account for
        queue_calls = sum(calls.values())
        evalsha = phase.commands["EVALSHA"]
        assert calls.get("take", 0) + settles <= evalsha <= queue_calls + 1
        # a blocking wait is one BLMOVE (BRPOPLPUSH before Redis 6.2) on the server; the last
        # may still be blocked when the worker stops, and Redis counts a call once it returns
        blocking = phase.commands.get("BLMOVE", 0) + phase.commands.get("BRPOPLPUSH", 0)
        waits = calls.get("wait_for_work", 0)
        assert waits - 1 <= blocking <= waits
        # the worker's client writes cover every Queue call (plus connection setup)
        assert phase.round_trips >= queue_calls

    measured = int(LATENCY_RATE * LATENCY_SECONDS)
    assert len(pw.latency_ms) == measured
    assert all(latency >= 0 for latency in pw.latency_ms)
    assert pw.p(50) <= pw.p(99)

    text = render(report)
    assert "| preview-worker |" in text
    assert "Checks (preview-worker): every job ran exactly once" in text
    assert "Targets" not in text  # no saq to compare with
    assert "PROBLEMS" not in text


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--jobs", "0"], "--jobs must be at least 1"),
        (["--latency-rate", "-1"], "must be positive"),
        (["--only", "celery"], "invalid choice"),
    ],
)
def test_queue_bench_rejects_bad_flags(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert message in err
    assert "Traceback" not in err
