"""The health app against a fake WorkerStatus, the uvicorn server, and the healthcheck command."""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
from collections.abc import Awaitable, Callable

import httpx
import pytest
import redis.asyncio as aioredis

from app import __version__
from app.health import (
    HEALTH_PATH,
    HealthServer,
    add_commands,
    create_app,
    default_url,
    healthcheck,
    stall_seconds_of,
)
from app.metrics import Metrics
from app.settings import Settings
from tests.redis_server import RedisServer

SECRET = "s3cr3t-Pa55word"


class FakeStatus:
    """A WorkerStatus whose every answer the test sets."""

    def __init__(self, ping: Callable[[], Awaitable[float]] | None = None) -> None:
        self.worker_id = "host-1-abc"
        self.track = "canary"
        self.concurrency = 4
        self.metrics = Metrics(queue="previews", track="canary")
        self.running = 3
        self.since_poll: float | None = 0.5
        self.alive = True
        self.uptime = 100.0
        self.is_draining = False
        self.ping = ping or self._ok
        self.settings: Settings | None = None

    @staticmethod
    async def _ok() -> float:
        return 0.25

    def in_flight(self) -> int:
        return self.running

    def seconds_since_poll(self) -> float | None:
        return self.since_poll

    def fetch_loop_alive(self) -> bool:
        return self.alive

    def uptime_seconds(self) -> float:
        return self.uptime

    def draining(self) -> bool:
        return self.is_draining

    async def redis_ping_ms(self) -> float:
        return await self.ping()

    async def queue_depths(self) -> dict[str, int]:
        raise AssertionError("health must read depths from the gauges, not from Redis")


def client_for(status: FakeStatus, **kw: float) -> httpx.AsyncClient:
    app = create_app(status, stall_seconds=kw.get("stall_seconds", 30.0), **_ping_kw(kw))
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t")


def _ping_kw(kw: dict[str, float]) -> dict[str, float]:
    return {"ping_timeout": kw["ping_timeout"]} if "ping_timeout" in kw else {}


async def refused() -> float:
    raise ConnectionError(f"Error connecting to redis://:{SECRET}@redis.internal:6379/0")


async def test_healthy_report_has_the_documented_shape() -> None:
    status = FakeStatus()
    status.metrics.set_depths(
        {"waiting": 7, "active": 3, "delayed": 1, "completed": 9, "failed": 2, "dead": 1}
    )
    async with client_for(status) as client:
        response = await client.get(HEALTH_PATH)
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert body["failing"] == []
    assert body["redis"] == {"connected": True, "roundTripMs": 0.25, "error": None}
    assert body["queue"]["name"] == "previews"
    assert body["queue"]["depths"] == {
        "waiting": 7, "active": 3, "delayed": 1, "completed": 9, "failed": 2, "dead": 1,
    }  # fmt: skip
    assert body["queue"]["depthsAgeSeconds"] >= 0
    worker = body["worker"]
    assert worker["id"] == "host-1-abc"
    assert worker["version"] == __version__
    assert worker["track"] == "canary"
    assert worker["concurrency"] == 4
    assert worker["inFlight"] == 3
    assert worker["secondsSincePoll"] == 0.5
    assert worker["uptimeSeconds"] == 100.0
    assert worker["stalled"] is False
    assert response.headers["cache-control"] == "no-store"


async def test_depths_are_empty_before_the_first_refresh() -> None:
    async with client_for(FakeStatus()) as client:
        body = (await client.get(HEALTH_PATH)).json()
    assert body["queue"]["depths"] == {}
    assert body["queue"]["depthsAgeSeconds"] is None


async def test_redis_down_is_503_naming_redis_without_secrets() -> None:
    status = FakeStatus(ping=refused)
    async with client_for(status) as client:
        health = await client.get(HEALTH_PATH)
        ready = await client.get("/readyz")
        live = await client.get("/healthz")
    assert health.status_code == 503
    body = health.json()
    assert body["status"] == "unhealthy"
    assert body["failing"] == ["redis"]
    assert body["redis"] == {"connected": False, "roundTripMs": None, "error": "ConnectionError"}
    assert set(body) == {"status", "failing", "redis", "queue", "worker"}
    assert ready.status_code == 503
    assert live.status_code == 200  # restarting cannot fix Redis
    for response in (health, ready, live):
        assert SECRET not in response.text
        assert "redis.internal" not in response.text
        assert "redis://" not in response.text


async def test_hanging_redis_answers_within_the_ping_timeout() -> None:
    never = asyncio.Event()

    async def hang() -> float:
        await never.wait()
        return 0.0

    status = FakeStatus(ping=hang)
    async with asyncio.timeout(10), client_for(status, ping_timeout=0.05) as client:
        health = await client.get(HEALTH_PATH)
        ready = await client.get("/readyz")
    assert health.status_code == 503
    assert health.json()["redis"]["error"] == "timeout"
    assert ready.status_code == 503
    assert "timeout" in ready.text


async def test_stalled_fetch_loop_is_503_and_fails_liveness() -> None:
    status = FakeStatus()
    status.since_poll = 31.0
    async with client_for(status, stall_seconds=30.0) as client:
        health = await client.get(HEALTH_PATH)
        live = await client.get("/healthz")
        ready = await client.get("/readyz")
    assert health.status_code == 503
    assert health.json()["failing"] == ["fetch_loop"]
    assert health.json()["worker"]["stalled"] is True
    assert live.status_code == 503
    assert "has not polled" in live.text
    assert ready.status_code == 200


async def test_stall_seconds_come_from_the_workers_settings() -> None:
    status = FakeStatus()
    status.settings = Settings(stall_seconds=5.0)
    status.since_poll = 6.0
    app = create_app(status)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        health = await c.get(HEALTH_PATH)
    assert health.json()["worker"]["stallSeconds"] == 5.0
    assert health.json()["failing"] == ["fetch_loop"]
    assert stall_seconds_of(FakeStatus()) == Settings().stall_seconds


async def test_busy_worker_waiting_for_a_slot_is_not_stalled() -> None:
    status = FakeStatus()
    status.since_poll = 240.0  # every slot busy with a long render: the fetch loop waits
    status.running = status.concurrency
    async with client_for(status, stall_seconds=30.0) as client:
        health = await client.get(HEALTH_PATH)
        live = await client.get("/healthz")
    assert health.status_code == 200
    assert health.json()["worker"]["stalled"] is False
    assert live.status_code == 200
    status.running = status.concurrency - 1  # a free slot and still no poll: stalled
    async with client_for(status, stall_seconds=30.0) as client:
        assert (await client.get("/healthz")).status_code == 503


async def test_stall_during_a_redis_outage_keeps_liveness() -> None:
    status = FakeStatus(ping=refused)
    status.since_poll = 120.0
    async with client_for(status, stall_seconds=30.0) as client:
        health = await client.get(HEALTH_PATH)
        live = await client.get("/healthz")
    assert health.json()["failing"] == ["redis", "fetch_loop"]
    assert live.status_code == 200
    assert "waiting for Redis" in live.text


async def test_dead_fetch_loop_fails_liveness_and_health() -> None:
    status = FakeStatus()
    status.alive = False
    async with client_for(status) as client:
        live = await client.get("/healthz")
        health = await client.get(HEALTH_PATH)
    assert live.status_code == 503
    assert health.status_code == 503
    assert health.json()["worker"]["fetchLoopAlive"] is False


@pytest.mark.parametrize(("uptime", "expected"), [(5.0, 200), (45.0, 503)])
async def test_never_polled_is_stalled_only_after_stall_seconds(
    uptime: float, expected: int
) -> None:
    status = FakeStatus()
    status.since_poll = None
    status.uptime = uptime
    async with client_for(status, stall_seconds=30.0) as client:
        health = await client.get(HEALTH_PATH)
        live = await client.get("/healthz")
    assert health.status_code == expected
    assert live.status_code == expected
    assert health.json()["worker"]["secondsSincePoll"] is None


async def test_draining_is_not_ready_but_alive_and_not_a_failure() -> None:
    status = FakeStatus()
    status.is_draining = True
    status.since_poll = 300.0  # the fetch loop stops on purpose while draining
    async with client_for(status) as client:
        ready = await client.get("/readyz")
        live = await client.get("/healthz")
        health = await client.get(HEALTH_PATH)
    assert ready.status_code == 503
    assert ready.text == "draining\n"
    assert live.status_code == 200
    assert health.status_code == 200
    assert health.json()["status"] == "draining"
    assert health.json()["worker"]["draining"] is True


async def test_metrics_are_prometheus_text_without_created_series() -> None:
    status = FakeStatus()
    status.metrics.job("completed")
    status.metrics.job("dryrun")
    status.metrics.observe_duration(0.3)
    async with client_for(status) as client:
        response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    text = response.text
    labels = 'queue="previews",track="canary"'
    assert f'preview_jobs_total{{outcome="completed",{labels}}} 1.0' in text
    assert f"preview_jobs_dryrun_total{{{labels}}} 1.0" in text
    assert f'preview_job_duration_seconds_bucket{{le="0.5",{labels}}} 1.0' in text
    assert f'preview_worker_info{{{labels},version="{__version__}"}} 1.0' in text
    assert "_created" not in text


async def test_metrics_speak_openmetrics_when_asked() -> None:
    status = FakeStatus()
    async with client_for(status) as client:
        response = await client.get(
            "/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"}
        )
    assert response.headers["content-type"].startswith("application/openmetrics-text")
    assert response.text.endswith("# EOF\n")


async def test_only_get_is_allowed() -> None:
    async with client_for(FakeStatus()) as client:
        assert (await client.post("/healthz")).status_code == 405
        assert (await client.get("/nope")).status_code == 404


@pytest.fixture
async def redis_with_password(redis_server: RedisServer) -> str:
    """The URL of the test Redis once it requires ``SECRET``."""
    admin = aioredis.Redis.from_url(redis_server.url)
    await admin.config_set("requirepass", SECRET)
    await admin.aclose()
    return f"redis://:{SECRET}@127.0.0.1:{redis_server.port}/0"


async def test_real_redis_with_a_password_never_leaks(redis_with_password: str) -> None:
    """Ping a real Redis through a URL holding a password; then with a wrong one."""
    for url, expected in (
        (redis_with_password, 200),
        (redis_with_password.replace(SECRET, SECRET + "-wrong"), 503),
    ):
        client = aioredis.Redis.from_url(url, socket_timeout=1)

        async def ping(client: aioredis.Redis = client) -> float:
            loop = asyncio.get_running_loop()
            start = loop.time()
            await client.ping()
            return (loop.time() - start) * 1000

        status = FakeStatus(ping=ping)
        try:
            async with client_for(status) as http:
                responses = [await http.get(p) for p in (HEALTH_PATH, "/readyz", "/metrics")]
        finally:
            await client.aclose()
        assert responses[0].status_code == expected, responses[0].text
        assert responses[1].status_code == expected
        for response in responses:
            assert SECRET not in response.text
            assert "redis://" not in response.text
        if expected == 503:
            assert responses[0].json()["redis"]["error"] == "AuthenticationError"


async def test_server_serves_in_this_loop_and_healthcheck_follows_it() -> None:
    status = FakeStatus()
    server = HealthServer(status, host="127.0.0.1", port=0)
    await server.start()
    url = f"http://127.0.0.1:{server.port}{HEALTH_PATH}"
    try:
        assert server.port != 0
        assert await asyncio.to_thread(healthcheck, url) == 0
        status.ping = refused
        assert await asyncio.to_thread(healthcheck, url) == 1
        async with httpx.AsyncClient() as client:
            body = (await client.get(url)).json()
        assert body["failing"] == ["redis"]
    finally:
        await server.stop()
    assert await asyncio.to_thread(healthcheck, url, 1.0) == 1  # nobody listens any more


async def test_busy_port_fails_start_with_oserror() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        server = HealthServer(FakeStatus(), host="127.0.0.1", port=port)
        with pytest.raises(OSError, match="in use"):
            await server.start()
        await server.stop()


def test_healthcheck_reports_the_failing_part(capsys: pytest.CaptureFixture[str]) -> None:
    async def main() -> int:
        server = HealthServer(FakeStatus(ping=refused), host="127.0.0.1", port=0)
        await server.start()
        try:
            return await asyncio.to_thread(
                healthcheck, f"http://127.0.0.1:{server.port}{HEALTH_PATH}"
            )
        finally:
            await server.stop()

    assert asyncio.run(main()) == 1
    err = capsys.readouterr().err
    assert "answered 503 (failing: redis)" in err
    assert SECRET not in err


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="preview-worker")
    add_commands(p.add_subparsers(dest="command", required=True))
    return p


def test_healthcheck_command_with_health_disabled_exits_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PREVIEW_HEALTH_PORT", "0")
    args = parser().parse_args(["healthcheck"])
    assert args.func(args) == 2
    assert "health server is disabled" in capsys.readouterr().err


def test_healthcheck_command_with_bad_env_exits_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PREVIEW_HEALTH_PORT", "http")
    args = parser().parse_args(["healthcheck"])
    assert args.func(args) == 2
    err = capsys.readouterr().err
    assert "PREVIEW_HEALTH_PORT" in err
    assert "Traceback" not in err


def test_healthcheck_command_rejects_a_bad_timeout(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        parser().parse_args(["healthcheck", "--timeout", "soon"])
    assert exc.value.code == 2
    assert "expected a number of seconds" in capsys.readouterr().err


def test_healthcheck_command_nobody_listening_exits_1(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setenv("PREVIEW_HEALTH_PORT", str(port))
    monkeypatch.setenv("REDIS_URL", f"redis://:{SECRET}@127.0.0.1:1/0")
    args = parser().parse_args(["healthcheck", "--timeout", "1"])
    assert args.func(args) == 1
    err = capsys.readouterr().err
    assert f"127.0.0.1:{port}{HEALTH_PATH} did not answer" in err
    assert SECRET not in err


def test_default_url_targets_loopback() -> None:
    assert default_url(Settings(health_port=3000)) == f"http://127.0.0.1:3000{HEALTH_PATH}"
    assert default_url(Settings(health_host="::", health_port=9)) == f"http://[::1]:9{HEALTH_PATH}"
    assert default_url(Settings(health_host="10.1.2.3", health_port=9)).startswith(
        "http://10.1.2.3:9/"
    )


def test_health_document_is_plain_json() -> None:
    """The body round-trips through json (no NaN/inf sneaking in from gauges)."""

    async def main() -> str:
        async with client_for(FakeStatus()) as client:
            return (await client.get(HEALTH_PATH)).text

    text = asyncio.run(main())
    assert json.loads(text, parse_constant=lambda c: pytest.fail(f"non-JSON constant {c}"))
