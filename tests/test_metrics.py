"""The series the worker exports: names, labels and what each Metrics method moves."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from app import __version__
from app.metrics import DURATION_BUCKETS, OUTCOMES, STATES, Metrics

DOC = Path(__file__).resolve().parent.parent / "docs" / "metrics.md"
SERIES = (
    "preview_jobs_total",
    "preview_jobs_dryrun_total",
    "preview_job_duration_seconds",
    "preview_jobs_in_flight",
    "preview_queue_depth",
    "preview_jobs_recovered_total",
    "preview_redis_errors_total",
    "preview_jobs_fenced_total",
    "preview_worker_info",
    "preview_worker_last_poll_timestamp_seconds",
)


def samples(metrics: Metrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = generate_latest(metrics.registry).decode()
    out: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(metrics: Metrics, name: str, **labels: str) -> float | None:
    full = {"queue": metrics.queue, "track": metrics.track, **labels}
    return samples(metrics).get((name, tuple(sorted(full.items()))))


def test_every_documented_series_is_exported_with_queue_and_track() -> None:
    m = Metrics(queue="q1", track="canary")
    m.set_depths(dict.fromkeys(STATES, 0))
    names = {name for name, _ in samples(m)}
    for series in SERIES:
        assert any(n == series or n.startswith(series + "_") for n in names), series
    for (_, labels), _v in samples(m).items():
        as_dict = dict(labels)
        assert as_dict["queue"] == "q1"
        assert as_dict["track"] == "canary"
    assert not any(n.endswith("_created") for n in names)


def test_job_outcomes_and_dryrun() -> None:
    m = Metrics(queue="q", track="stable")
    for outcome in OUTCOMES:
        assert value(m, "preview_jobs_total", outcome=outcome) == 0
    m.job("completed", 3)
    m.job("failed")
    m.job("dryrun")
    assert value(m, "preview_jobs_total", outcome="completed") == 3
    assert value(m, "preview_jobs_total", outcome="failed") == 1
    assert value(m, "preview_jobs_total", outcome="dryrun") == 1
    assert value(m, "preview_jobs_dryrun_total") == 1


def test_duration_buckets_reach_300_seconds() -> None:
    assert DURATION_BUCKETS[-1] == 300
    m = Metrics(queue="q", track="stable")
    m.observe_duration(250)
    assert value(m, "preview_job_duration_seconds_bucket", le="120.0") == 0
    assert value(m, "preview_job_duration_seconds_bucket", le="300.0") == 1
    assert value(m, "preview_job_duration_seconds_count") == 1


def test_gauges_and_counters_move() -> None:
    m = Metrics(queue="q", track="stable")
    m.set_in_flight(2)
    m.add_recovered(4)
    m.redis_error()
    m.add_fenced()
    m.polled(1_700_000_000.5)
    assert value(m, "preview_jobs_in_flight") == 2
    assert value(m, "preview_jobs_recovered_total") == 4
    assert value(m, "preview_redis_errors_total") == 1
    assert value(m, "preview_jobs_fenced_total") == 1
    assert value(m, "preview_worker_last_poll_timestamp_seconds") == 1_700_000_000.5
    assert value(m, "preview_worker_info", version=__version__) == 1


def test_depth_series_appear_only_after_the_first_refresh() -> None:
    m = Metrics(queue="q", track="stable")
    assert not any(name == "preview_queue_depth" for name, _ in samples(m))
    assert m.depths == {}
    assert m.depths_refreshed_at is None
    m.set_depths({"waiting": 5, "dead": 2})
    assert value(m, "preview_queue_depth", state="waiting") == 5
    assert value(m, "preview_queue_depth", state="dead") == 2
    assert m.depths == {"waiting": 5, "dead": 2}
    assert m.depths_refreshed_at is not None
    m.set_depths({"waiting": 1})
    assert m.depths == {"waiting": 1, "dead": 2}


def test_two_workers_do_not_share_a_registry() -> None:
    a = Metrics(queue="q", track="stable")
    b = Metrics(queue="q", track="stable")
    a.job("completed")
    assert value(b, "preview_jobs_total", outcome="completed") == 0


def test_docs_list_every_series() -> None:
    if not DOC.exists():
        pytest.fail("docs/metrics.md is missing")
    text = DOC.read_text()
    for series in SERIES:
        assert re.search(rf"`{re.escape(series)}(\{{|`)", text), f"{series} not in docs/metrics.md"
