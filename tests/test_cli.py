"""The CLI end to end against a real Redis: run, enqueue, status, stats, dlq, errors."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.jobs import job
from tests.redis_server import RedisServer

ROOT = Path(__file__).resolve().parents[1]


def cli(
    *args: str, env: dict[str, str] | None = None, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, "PREVIEW_HEALTH_PORT": "0", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "app.cli", *args],
        cwd=ROOT,
        env=full_env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture
def env(redis_server: RedisServer) -> dict[str, str]:
    return {
        "REDIS_URL": redis_server.url,
        "PREVIEW_QUEUE": "cli",
        "PREVIEW_DEFAULT_HANDLER": "noop",
        "PREVIEW_BACKOFF_SECONDS": "0.01",
    }


def lines(*jobs: dict[str, Any]) -> str:
    return "\n".join(json.dumps(j) for j in jobs) + "\n"


def test_enqueue_run_status_stats(env: dict[str, str]) -> None:
    out = cli("enqueue", "--json", env=env, stdin=lines(job("a"), job("b"), job("a")))
    assert out.returncode == 0, out.stderr
    rows = [json.loads(line) for line in out.stdout.splitlines()]
    assert [(r["jobId"], r["created"]) for r in rows] == [("a", True), ("b", True), ("a", False)]
    stats = json.loads(cli("stats", "--json", env=env).stdout)
    assert (stats["queue"], stats["waiting"]) == ("cli", 2)
    run = cli("run", "--burst", env=env)
    assert run.returncode == 0, run.stderr
    status = cli("status", "a", "--json", env=env)
    assert status.returncode == 0
    record = json.loads(status.stdout)
    assert (record["state"], record["attempts"], record["result"]) == (
        "completed",
        1,
        {"handler": "noop", "rendered": False},
    )
    human = cli("status", "a", env=env)
    assert human.stdout.startswith("a: completed")
    stats = json.loads(cli("stats", "--json", env=env).stdout)
    assert (stats["waiting"], stats["completed"]) == (0, 2)
    missing = cli("status", "nope", env=env)
    assert missing.returncode == 1
    assert "no job 'nope'" in missing.stderr


def test_enqueue_from_a_file_and_invalid_input(env: dict[str, str], tmp_path: Path) -> None:
    path = tmp_path / "job.json"
    path.write_text(json.dumps(job("f"), indent=2))
    ok = cli("enqueue", str(path), env=env)
    assert ok.returncode == 0, ok.stderr
    assert "enqueued f (waiting)" in ok.stdout
    bad = job("g")
    bad["dryRun"] = "yes"
    invalid = cli("enqueue", env=env, stdin=lines(bad))
    assert invalid.returncode == 2
    assert "invalid_payload" in invalid.stderr
    assert "$.dryRun" in invalid.stderr
    unreadable = cli("enqueue", str(tmp_path / "missing.json"), env=env)
    assert unreadable.returncode == 3


def test_queue_full_is_a_clear_error(env: dict[str, str]) -> None:
    full_env = {**env, "PREVIEW_QUEUE_MAX": "1"}
    out = cli("enqueue", env=full_env, stdin=lines(job("a"), job("b")))
    assert out.returncode == 2
    assert "queue is full" in out.stderr


def test_dead_letter_commands(env: dict[str, str]) -> None:
    poison = job("p", options={"renderer": "missing-plugin"})
    assert cli("enqueue", env=env, stdin=lines(poison)).returncode == 0
    assert cli("run", "--burst", env=env).returncode == 0
    listed = cli("dlq", "list", "--json", env=env)
    [entry] = json.loads(listed.stdout)
    assert (entry["jobId"], entry["reason"]) == ("p", "unknown_handler")
    shown = cli("dlq", "show", "p", env=env)
    assert json.loads(shown.stdout)["payload"]
    requeued = cli("dlq", "requeue", "p", env=env)
    assert requeued.returncode == 0, requeued.stderr
    assert "requeued p" in requeued.stdout
    assert json.loads(cli("status", "p", "--json", env=env).stdout)["state"] == "waiting"
    assert cli("run", "--burst", env=env).returncode == 0
    purged = cli("dlq", "purge", "--all", env=env)
    assert purged.stdout.strip() == "purged 1 entry"
    assert json.loads(cli("stats", "--json", env=env).stdout)["dead"] == 0
    assert cli("dlq", "requeue", env=env).returncode == 2  # neither JOB_ID nor --all


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("PREVIEW_WORKER_CONCURRENCY", "many", "PREVIEW_WORKER_CONCURRENCY='many'"),
        ("PREVIEW_WORKER_CONCURRENCY", "0", "between 1 and 1024"),
        ("PREVIEW_TRACK", "beta", "must be one of stable, canary"),
        ("PREVIEW_LEASE_SECONDS", "-1", "PREVIEW_LEASE_SECONDS"),
        ("REDIS_URL", "http://user:hunter2@x", "REDIS_URL=<redacted>"),
    ],
)
def test_bad_configuration_exits_2_without_traceback(
    variable: str, value: str, message: str
) -> None:
    out = cli("run", "--burst", env={variable: value})
    assert out.returncode == 2
    assert message in out.stderr
    assert "Traceback" not in out.stderr
    assert "hunter2" not in out.stderr


def test_bad_flag_exits_2() -> None:
    out = cli("run", "--concurrency", "abc")
    assert out.returncode == 2
    assert "invalid int value" in out.stderr


def test_unreachable_redis_is_reported_without_credentials(tmp_path: Path) -> None:
    env = {"REDIS_URL": "redis://admin:s3cret@127.0.0.1:1/0"}
    out = cli("stats", env=env)
    assert out.returncode == 1
    assert "Traceback" not in out.stderr
    assert "s3cret" not in out.stderr
    assert "redis://***@127.0.0.1:1/0" in out.stderr


def test_schema_command_prints_the_checked_in_schema() -> None:
    out = cli("schema")
    assert out.stdout == (ROOT / "schemas" / "preview-job.schema.json").read_text()


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--queue", "a b"], "--queue 'a b': must be"),
        (["--health-port", "99999"], "--health-port 99999: must be between 0 and 65535"),
        (["--concurrency", "0"], "--concurrency 0: must be between 1 and 1024"),
    ],
)
def test_flags_are_checked_like_their_variables(flags: list[str], message: str) -> None:
    out = cli("run", "--burst", *flags)
    assert out.returncode == 2
    assert message in out.stderr
    assert "Traceback" not in out.stderr


def test_enqueue_options_default_from_the_environment(env: dict[str, str]) -> None:
    out = cli("enqueue", env={**env, "PREVIEW_ATTEMPTS": "7"}, stdin=lines(job("e")))
    assert out.returncode == 0, out.stderr
    assert json.loads(cli("status", "e", "--json", env=env).stdout)["maxAttempts"] == 7
    out = cli("enqueue", "--attempts", "2", env=env, stdin=lines(job("f")))
    assert json.loads(cli("status", "f", "--json", env=env).stdout)["maxAttempts"] == 2


def test_validate_reports_a_broken_pretty_printed_file_once(tmp_path: Path) -> None:
    path = tmp_path / "broken.json"
    path.write_text(json.dumps(job("x"), indent=2)[:-3] + "\n")
    out = cli("validate", str(path))
    assert out.returncode == 2
    assert out.stdout.count(str(path)) == 1
    assert "undecodable" in out.stdout


def test_busy_health_port_is_a_clear_error(env: dict[str, str]) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        out = cli(
            "run",
            "--burst",
            env={**env, "PREVIEW_HEALTH_HOST": "127.0.0.1", "PREVIEW_HEALTH_PORT": str(port)},
        )
    assert out.returncode == 1
    assert f"cannot serve health and metrics on 127.0.0.1:{port}" in out.stderr
    assert "Traceback" not in out.stderr
