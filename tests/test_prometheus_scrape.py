"""A real Prometheus scrapes two real workers (stable and canary) while they run jobs.

One scenario per module (it takes a few seconds): redis-server, two ``preview-worker run``
processes on one queue, and ``prometheus`` (Debian package) on loopback with a 1 s scrape
interval and the chart's rule file loaded. The tests then query Prometheus's HTTP API:

- the scraped series say what happened (jobs per outcome, durations, depths, workers);
- every rule evaluates without error and the dead-letter alert fires for real;
- every expression of the Grafana dashboard (panels and variables) evaluates without error and
  returns data, with the variables set to "All" and to one value each.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis

from app.keys import Keys
from app.queue import JobOptions, Queue
from tests.conftest import require_tool
from tests.jobs import job
from tests.redis_server import RedisServer, free_port

ROOT = Path(__file__).resolve().parent.parent
RULES = ROOT / "charts" / "preview-worker" / "files" / "prometheus-rules.yaml"
DASHBOARD = ROOT / "charts" / "preview-worker" / "files" / "dashboard.json"
QUEUE = "scrape-test"
NAMESPACE = "obs-test"
DEADLINE = 90.0
SECRET = "obs-Scrape-S3cret"
OK_JOBS, DRY_JOBS, UNKNOWN_HANDLER_JOBS = 12, 3, 2


def wait_until(check: Callable[[], bool], what: str, timeout: float = DEADLINE) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(0.2)


class Prom:
    """A Prometheus server process and a client of its HTTP API."""

    def __init__(self, binary: str, workdir: Path, targets: list[str]) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(RULES)],
            "scrape_configs": [
                {
                    "job_name": "preview-worker",
                    "scrape_timeout": "1s",
                    "static_configs": [{"targets": targets, "labels": {"namespace": NAMESPACE}}],
                }
            ],
        }
        workdir.mkdir(parents=True, exist_ok=True)
        (workdir / "prometheus.yml").write_text(json.dumps(config))  # JSON is YAML
        self.log = workdir / "prometheus.log"
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen(
                [
                    binary,
                    f"--config.file={workdir / 'prometheus.yml'}",
                    f"--storage.tsdb.path={workdir / 'data'}",
                    f"--web.listen-address=127.0.0.1:{self.port}",
                    "--log.level=warn",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=workdir,
            )
        self.http = httpx.Client(base_url=self.url, timeout=10)

    def ready(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"prometheus exited: {self.log.read_text()[-2000:]}")
        try:
            return self.http.get("/-/ready").status_code == 200
        except httpx.HTTPError:
            return False

    def api(self, path: str, **params: Any) -> Any:
        response = self.http.get(f"/api/v1/{path}", params=params)
        body = response.json()
        assert body["status"] == "success", f"{path} {params}: {body}"
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        data = self.api("query", query=expr)
        assert data["resultType"] == "vector", f"{expr}: {data['resultType']}"
        result: list[dict[str, Any]] = data["result"]
        return result

    def value(self, expr: str) -> float | None:
        """The single value ``expr`` returns, None when it returns nothing."""
        result = self.query(expr)
        if not result:
            return None
        assert len(result) == 1, f"{expr}: {result}"
        return float(result[0]["value"][1])

    def stop(self) -> None:
        self.http.close()
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)


@dataclass
class WorkerProc:
    track: str
    port: int
    proc: subprocess.Popen[bytes]
    log: Path

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def ready(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"worker exited: {self.log.read_text()[-2000:]}")
        try:
            return httpx.get(f"http://{self.target}/readyz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False


def start_worker(redis_url: str, track: str, workdir: Path) -> WorkerProc:
    port = free_port()
    workdir.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        "REDIS_URL": redis_url,
        "PREVIEW_QUEUE": QUEUE,
        "PREVIEW_TRACK": track,
        "PREVIEW_HEALTH_HOST": "127.0.0.1",
        "PREVIEW_HEALTH_PORT": str(port),
        "PREVIEW_DEFAULT_HANDLER": "noop",
        "PREVIEW_WORKER_CONCURRENCY": "2",
        "PREVIEW_DEPTH_REFRESH_SECONDS": "0.2",
        "PREVIEW_STALL_SECONDS": "45",
        "PREVIEW_WORKER_ID": f"scrape-{track}",
        "PREVIEW_LOG_LEVEL": "warning",
        "DATA_DIR": str(workdir / "data"),
    }
    log = workdir / "worker.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "app.cli", "run"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
        )
    return WorkerProc(track, port, proc, log)


async def enqueue_jobs(redis_url: str) -> None:
    client = aioredis.Redis.from_url(redis_url)
    try:
        # a foreign, undecodable element pushed past the enqueue script: outcome "invalid"
        await client.lpush(Keys(QUEUE).wait("normal"), b"{not json")
        queue = Queue(client, name=QUEUE, defaults=JobOptions(attempts=2, backoff_seconds=0.01))
        for i in range(OK_JOBS):
            await queue.enqueue(job(f"ok-{i}"))
        for i in range(DRY_JOBS):
            await queue.enqueue(job(f"dry-{i}", dry_run=True))
        for i in range(UNKNOWN_HANDLER_JOBS):
            await queue.enqueue(job(f"nohandler-{i}", options={"renderer": "not-installed"}))
    finally:
        await client.aclose()


async def require_password(url: str) -> None:
    client = aioredis.Redis.from_url(url)
    try:
        await client.config_set("requirepass", SECRET)
    finally:
        await client.aclose()


@dataclass
class Scenario:
    prom: Prom
    workers: list[WorkerProc]
    exit_codes: dict[str, int]


@pytest.fixture(scope="module")
def scenario(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scenario]:
    binary = shutil.which("prometheus")
    require_tool(binary is not None, "prometheus (Debian package prometheus)")
    assert binary is not None
    tmp = tmp_path_factory.mktemp("scrape")
    workers: list[WorkerProc] = []
    prom: Prom | None = None
    with RedisServer(tmp / "redis") as redis:
        asyncio.run(require_password(redis.url))
        redis_url = f"redis://:{SECRET}@127.0.0.1:{redis.port}/0"
        try:
            workers = [start_worker(redis_url, t, tmp / t) for t in ("stable", "canary")]
            prom = Prom(binary, tmp / "prometheus", [w.target for w in workers])
            wait_until(lambda: all(w.ready() for w in workers), "workers ready")
            wait_until(prom.ready, "prometheus ready")
            p = prom
            # depth series exist (value 0) on both workers before any job: growth is visible
            wait_until(
                lambda: p.value('count(preview_queue_depth{state="dead"} == 0)') == 2,
                "both workers scraped with their first depth refresh",
            )
            asyncio.run(enqueue_jobs(redis_url))
            expected = {
                "completed": OK_JOBS,
                "dryrun": DRY_JOBS,
                "dead": UNKNOWN_HANDLER_JOBS,
                "invalid": 1,
            }

            def settled() -> bool:
                return (
                    all(
                        p.value(f'sum(preview_jobs_total{{outcome="{o}"}})') == n
                        for o, n in expected.items()
                    )
                    and p.value('max(preview_queue_depth{state="dead"})') == 3
                )

            wait_until(settled, f"Prometheus to scrape the settled jobs {expected}")
            yield Scenario(prom, workers, {})
        finally:
            for w in workers:
                if w.proc.poll() is None:
                    w.proc.kill()
                    w.proc.wait(timeout=10)
            if prom is not None:
                prom.stop()


def test_scraped_series_say_what_happened(scenario: Scenario) -> None:
    p = scenario.prom
    targets = p.api("targets")["activeTargets"]
    assert len(targets) == 2
    for target in targets:
        assert target["health"] == "up", target
        assert target["lastError"] == ""
    assert p.value('sum(preview_jobs_total{outcome="completed"})') == OK_JOBS
    assert p.value('sum(preview_jobs_total{outcome="failed"})') == UNKNOWN_HANDLER_JOBS
    assert p.value('sum(preview_jobs_total{outcome="dead"})') == UNKNOWN_HANDLER_JOBS
    assert p.value('sum(preview_jobs_total{outcome="retried"})') == 0
    assert p.value('sum(preview_jobs_total{outcome="invalid"})') == 1
    assert p.value('sum(preview_jobs_total{outcome="dryrun"})') == DRY_JOBS
    assert p.value("sum(preview_jobs_dryrun_total)") == DRY_JOBS
    # the handler ran only for the jobs it completed
    assert p.value("sum(preview_job_duration_seconds_count)") == OK_JOBS
    assert p.value('sum(preview_job_duration_seconds_bucket{le="300.0"})') == OK_JOBS
    assert p.value("sum(preview_jobs_recovered_total)") == 0
    assert p.value("sum(preview_jobs_fenced_total)") == 0
    assert p.value("sum(preview_redis_errors_total)") == 0
    wait_until(
        lambda: (
            p.value('max(preview_queue_depth{state=~"waiting|active|delayed"})') == 0
            and p.value("sum(preview_jobs_in_flight)") == 0
        ),
        "an idle queue scraped",
    )
    assert p.value('max(preview_queue_depth{state="dead"})') == 3
    assert p.value('max(preview_queue_depth{state="completed"})') == OK_JOBS + DRY_JOBS
    info = p.query("preview_worker_info")
    assert sorted(s["metric"]["track"] for s in info) == ["canary", "stable"]
    for series in info:
        assert series["metric"]["queue"] == QUEUE
        assert series["metric"]["namespace"] == NAMESPACE
        assert series["metric"]["version"]
    # every series carries queue and track
    for name in ("preview_jobs_total", "preview_queue_depth", "preview_jobs_in_flight"):
        for series in p.query(name):
            assert series["metric"]["track"] in {"stable", "canary"}
            assert series["metric"]["queue"] == QUEUE
    # both fetch loops poll: their last poll is a recent timestamp, not the initial 0
    wait_until(
        lambda: (p.value("time() - min(preview_worker_last_poll_timestamp_seconds)") or 1e9) < 60,
        "recent polls of both workers",
    )
    assert p.query('{__name__=~".+_created"}') == []


def test_rules_evaluate_and_the_dead_letter_alert_fires(scenario: Scenario) -> None:
    p = scenario.prom

    def rules() -> list[dict[str, Any]]:
        return [r for g in p.api("rules")["groups"] for r in g["rules"]]

    wait_until(
        lambda: all(r["health"] == "ok" for r in rules()), "every rule evaluated successfully"
    )
    assert len(rules()) == 14
    assert p.value("preview_worker:threshold:failure_ratio") == 0.1
    # the recorded ratio per track equals failed / (completed + failed) attempts of that track
    # (every track that settled attempts; which worker took which job is up to them)
    attempts = 'sum by (track) (increase(preview_jobs_total{outcome=~"completed|failed"}[5m])) > 0'
    tracks = {s["metric"]["track"] for s in p.query(attempts)}
    assert tracks
    wait_until(
        lambda: (
            tracks
            <= {s["metric"]["track"] for s in p.query("preview_worker:failure_ratio:rate5m >= 0")}
        ),
        f"the failure ratio recorded for {sorted(tracks)}",
    )
    for track in tracks:
        recorded = p.value(f'preview_worker:failure_ratio:rate5m{{track="{track}"}}')
        selector = f'preview_jobs_total{{track="{track}",outcome'
        direct = p.value(
            f'sum(increase({selector}="failed"}}[5m]))'
            f' / sum(increase({selector}=~"completed|failed"}}[5m]))'
        )
        assert recorded is not None
        assert direct is not None
        assert math.isclose(recorded, direct, rel_tol=1e-6, abs_tol=1e-9), track
    # over both tracks, failed / (completed + failed) attempts = 2 / 14
    total = p.value(
        'sum(preview_jobs_total{outcome="failed"})'
        ' / sum(preview_jobs_total{outcome=~"completed|failed"})'
    )
    assert total is not None
    assert math.isclose(total, UNKNOWN_HANDLER_JOBS / (OK_JOBS + UNKNOWN_HANDLER_JOBS))
    wait_until(
        lambda: bool(p.query('ALERTS{alertname="PreviewDeadLetterGrowing",alertstate="firing"}')),
        "PreviewDeadLetterGrowing to fire",
    )
    firing = p.query('ALERTS{alertname="PreviewDeadLetterGrowing"}')[0]["metric"]
    assert firing["queue"] == QUEUE
    assert firing["namespace"] == NAMESPACE
    # workers poll: the no-consumer alert is not even pending
    assert p.query('ALERTS{alertname="PreviewBacklogWithoutConsumer"}') == []


def dashboard() -> dict[str, Any]:
    data = json.loads(DASHBOARD.read_text())
    assert isinstance(data, dict)
    return data


def panels(board: dict[str, Any]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for panel in board["panels"]:
        out.append(panel)
        out.extend(panel.get("panels", []))
    return out


def targets() -> list[tuple[str, str]]:
    return [
        (f"{panel['title']} / {t['refId']}", t["expr"])
        for panel in panels(dashboard())
        for t in panel.get("targets", [])
    ]


def substitute(expr: str, values: dict[str, str]) -> str:
    out = expr.replace("$__rate_interval", "30s").replace("$__interval", "5s")
    for name, value in values.items():
        out = out.replace(f"${{{name}}}", value).replace(f"${name}", value)
    assert "$" not in out, f"unknown variable left in {out!r}"
    return out


def test_dashboard_is_well_formed() -> None:
    board = dashboard()
    assert board["uid"] == "preview-worker"
    assert board["title"]
    ids = [p["id"] for p in panels(board)]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert set(variables) == {"datasource", "namespace", "queue", "track"}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    titles = " ".join(p["title"].lower() for p in panels(board))
    for topic in (
        "throughput", "failure ratio", "duration", "backlog", "dead-letter", "in flight",
        "recoveries", "track",
    ):  # fmt: skip
        assert topic in titles, f"no panel about {topic}"
    exprs = " ".join(e for _, e in targets())
    for quantile in ("0.5", "0.95", "0.99"):
        assert f"histogram_quantile({quantile}," in exprs
    for panel in panels(board):
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        assert panel["targets"], panel["title"]
        pos = panel["gridPos"]
        assert pos["x"] + pos["w"] <= 24
    assert targets()


def variable_values(p: Prom, values: dict[str, str]) -> dict[str, list[str]]:
    """Evaluate the dashboard's ``label_values(selector, label)`` variables as Grafana does."""
    out: dict[str, list[str]] = {}
    for var in dashboard()["templating"]["list"]:
        if var["type"] != "query":
            continue
        match = re.fullmatch(r"label_values\((.+), *(\w+)\)", var["query"]["query"])
        assert match, var["query"]
        selector = substitute(match.group(1), values)
        data = p.api(f"label/{match.group(2)}/values", **{"match[]": selector})
        out[var["name"]] = sorted(data)
    return out


@pytest.mark.parametrize(
    "choice",
    [
        {"namespace": ".*", "queue": ".*", "track": ".*"},
        {"namespace": NAMESPACE, "queue": QUEUE, "track": "canary"},
        {"namespace": NAMESPACE, "queue": f"({QUEUE}|other)", "track": "(stable|canary)"},
    ],
    ids=["all", "one-each", "multi"],
)
def test_every_dashboard_expression_evaluates_with_data(
    scenario: Scenario, choice: dict[str, str]
) -> None:
    p = scenario.prom
    values = {**choice, "datasource": "prometheus"}
    assert variable_values(p, values) == {
        "namespace": [NAMESPACE],
        "queue": [QUEUE],
        "track": ["canary", "stable"],
    }
    end = time.time()
    for where, expr in targets():
        query = substitute(expr, values)
        instant = p.query(query)
        assert instant, f"{where}: no data for {query}"
        ranged = p.api("query_range", query=query, start=end - 60, end=end, step=5)
        assert ranged["resultType"] == "matrix"
        assert ranged["result"], f"{where}: no range data for {query}"


def test_healthcheck_command_probes_a_running_worker(scenario: Scenario) -> None:
    worker = scenario.workers[0]
    env = {**os.environ, "PREVIEW_HEALTH_PORT": str(worker.port)}
    result = subprocess.run(
        [sys.executable, "-m", "app.cli", "healthcheck"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    body = httpx.get(f"http://{worker.target}/api/preview/worker/health", timeout=5).json()
    assert body["status"] == "ok"
    assert body["worker"]["track"] == worker.track
    assert body["worker"]["stallSeconds"] == 45
    assert body["queue"]["depths"]["dead"] == 3


def test_the_redis_password_never_leaves_the_worker(scenario: Scenario) -> None:
    """REDIS_URL holds a password: no route, log line or scraped label shows it."""
    for worker in scenario.workers:
        for path in ("/metrics", "/healthz", "/readyz", "/api/preview/worker/health"):
            text = httpx.get(f"http://{worker.target}{path}", timeout=5).text
            assert SECRET not in text, path
            assert "redis://" not in text, path
        assert SECRET not in worker.log.read_text()
    labels = scenario.prom.api("labels")
    for label in labels:
        assert SECRET not in json.dumps(scenario.prom.api(f"label/{label}/values"))


def test_workers_exit_0_on_sigterm(scenario: Scenario) -> None:
    for worker in scenario.workers:
        worker.proc.send_signal(signal.SIGTERM)
    for worker in scenario.workers:
        try:
            code = worker.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            pytest.fail(f"{worker.track} worker did not exit after SIGTERM")
        assert code == 0, worker.log.read_text()[-2000:]
