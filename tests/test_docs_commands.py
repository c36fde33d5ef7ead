"""Every command in the operations docs is exercised, or says why it cannot run here.

Each line of a ```sh block in docs/deployment.md, docs/troubleshooting.md and docs/checklist.md
is classified:

* ``cli``: a ``preview-worker`` command (a ``kubectl exec … --`` prefix is stripped, as the
  command inside the pod is the same) runs for real against a Redis holding a dead-lettered
  poison job, from a scratch copy of the repository's charts/values/fixtures;
* ``verify``: ``preview-worker deploy verify`` runs against the recording helm/kubectl
  stand-ins of tests/test_deploy.py (scenario: healthy) and must say "healthy";
* ``local``: ``helm lint``, hadolint, check-jsonschema run for real;
* ``cluster``: other ``kubectl``/``helm`` commands run through the real binaries against an
  unreachable API server: they must get as far as trying to connect, so a wrong subcommand,
  flag or argument count fails here;
* ``documented``: commands that need a container engine, root on a host, or are this very
  test suite; the reason is recorded below.

A command that fits none of these fails the test: new doc commands must be exercised.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests import test_deploy
from tests.conftest import require_tool
from tests.redis_server import RedisServer, free_port

ROOT = Path(__file__).resolve().parent.parent
DOCS = ("docs/deployment.md", "docs/troubleshooting.md", "docs/checklist.md")
VENV_BIN = Path(sys.executable).parent
DIGEST = "0123456789abcdef" * 4
POISON = "poison-1"

DOCUMENTED = {
    "docker ": "no container engine here; tests/test_dockerfile.py and test_runtime_sandbox.py "
    "check the image contract",
    "python3 -m venv /opt/": "installs into /opt on a host (root)",
    "/opt/preview-worker/bin/pip ": "installs into /opt on a host (root)",
    "install ": "writes to /etc on a host (root)",
    "systemctl ": "needs systemd as PID 1",
    "journalctl ": "needs systemd as PID 1",
    "systemd-analyze verify /etc/": "needs the unit installed; tests/test_systemd.py runs "
    "verify on systemd/preview-worker.service",
    "systemd-analyze security preview-worker": "needs the unit installed; tests/test_systemd.py "
    "runs security --offline on the repository's unit",
    "make test": "this test runs inside make test",
    ".venv/bin/ruff ": "make test runs the same lint (make lint)",
    ".venv/bin/mypy": "make test runs the same type check (make typecheck)",
    ".venv/bin/python -m pytest ": "make test runs these tests",
}
CLUSTER_OK = re.compile(
    r"connection refused|was refused|cluster unreachable|dial tcp|unable to connect|"
    r"couldn.t get current server|no such host|the server could not find|i/o timeout",
    re.IGNORECASE,
)
SYNTAX_ERROR = re.compile(
    r"unknown (flag|shorthand|command)|invalid argument|accepts \d+ arg|requires at least|"
    r"requires exactly|flag needs an argument|required flag|unknown resource type|"
    r"error: unknown",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class DocCommand:
    doc: str
    line: str


def _doc_commands() -> list[DocCommand]:
    found: list[DocCommand] = []
    for doc in DOCS:
        text = (ROOT / doc).read_text()
        for block in re.findall(r"^ *```sh\n(.*?)^ *```", text, re.DOTALL | re.MULTILINE):
            joined = re.sub(r"\\\n\s*", " ", block)
            for raw in joined.splitlines():
                line = raw.strip()
                if line and not line.startswith("#"):
                    found.append(DocCommand(doc, line))
    return found


COMMANDS = _doc_commands()
_EXEC = re.compile(r"^kubectl -n \S+ exec (-i )?deploy/[a-z0-9-]+ -- (?=preview-worker )")


def classify(line: str) -> tuple[str, str]:
    """(kind, the command to run or the reason it is not run)."""
    for prefix, reason in DOCUMENTED.items():
        if line.startswith(prefix):
            return "documented", reason
    inner = _EXEC.sub("", line)
    inner = re.sub(r"^\.venv/bin/preview-worker ", "preview-worker ", inner)
    if inner.startswith("preview-worker deploy verify "):
        return "verify", inner
    if inner.startswith("preview-worker "):
        return "cli", inner
    if line.startswith(("helm lint ", ".venv/bin/hadolint ", ".venv/bin/check-jsonschema ")):
        return "local", line
    if line.startswith(("kubectl ", "helm ")):
        return "cluster", line
    return "unclassified", line


def test_docs_have_commands_and_every_one_is_classified() -> None:
    assert {c.doc for c in COMMANDS} == set(DOCS)
    unclassified = [c for c in COMMANDS if classify(c.line)[0] == "unclassified"]
    assert not unclassified, "exercise these commands or document why they cannot run:\n" + (
        "\n".join(f"{c.doc}: {c.line}" for c in unclassified)
    )


def test_classification_would_flag_an_unknown_command() -> None:
    assert classify("curl http://localhost:3000/metrics")[0] == "unclassified"
    assert classify("kubectl -n preview exec deploy/preview-worker -- preview-worker stats") == (
        "cli",
        "preview-worker stats",
    )


# --------------------------------------------------------------------------- environment


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    """A scratch copy of what the commands read and write, with a job.json to enqueue."""
    work = tmp_path / "work"
    work.mkdir()
    for name in ("charts", "values", ".github", "tests/fixtures"):
        shutil.copytree(ROOT / name, work / name)
    for name in ("Dockerfile",):
        shutil.copy2(ROOT / name, work / name)
    (work / ".venv").symlink_to(VENV_BIN.parent)
    job = json.loads((ROOT / "tests/fixtures/jobs/valid/prototype-dry-run.json").read_text())
    job["jobId"] = "doc-job-1"
    (work / "job.json").write_text(json.dumps(job))
    return work


def _poison_job() -> dict[str, object]:
    return {
        "jobId": POISON,
        "projectId": "docs",
        "requestId": "req-poison",
        "dryRun": False,
        "previewRequest": {
            "steps": [{"title": "Board", "assetId": "board"}],
            "assets": [{"id": "board", "type": "image", "uri": "boards/missing.png"}],
            "audio": {},
            "options": {"resolution": "160x90", "fps": 4},
        },
    }


def _path_env(*first: Path) -> str:
    tools = ROOT / ".tools/bin"
    return os.pathsep.join([*map(str, first), str(VENV_BIN), str(tools), os.environ["PATH"]])


def _wait_port(port: int, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert proc.poll() is None, "the health worker exited"
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise AssertionError("the health worker did not listen in time")


def _dead_letter_poison(cli: str, env: dict[str, str]) -> None:
    """Run a worker until the poison job is dead-lettered, then stop it with SIGTERM."""
    worker = subprocess.Popen(
        [cli, "run"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    try:
        deadline = time.monotonic() + 120
        while True:
            assert worker.poll() is None, "the worker exited early"
            assert time.monotonic() < deadline, "the poison job was not dead-lettered in time"
            status = subprocess.run(
                [cli, "status", POISON, "--json"], env=env, capture_output=True, text=True
            )
            if status.returncode == 0 and json.loads(status.stdout)["state"] == "dead":
                break
            time.sleep(0.1)
        worker.send_signal(signal.SIGTERM)
        _, stderr = worker.communicate(timeout=60)
        assert worker.returncode == 0, stderr
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.communicate()


@pytest.fixture
def queue_env(
    workspace: Path, redis_server: RedisServer, tmp_path: Path
) -> Iterator[dict[str, str]]:
    """Redis with a dead-lettered poison job, and a healthy worker on another queue whose
    health port the commands use (so `healthcheck` has a worker to ask; nothing consumes the
    docs' queue, so the dead-letter commands see a stable list)."""
    env = {
        **os.environ,
        "PATH": _path_env(),
        "REDIS_URL": redis_server.url,
        "DATA_DIR": str(tmp_path / "data"),
        "PREVIEW_LOG_FORMAT": "text",
        "PREVIEW_HEALTH_PORT": "0",
    }
    env.pop("PREVIEW_QUEUE", None)
    poison = tmp_path / "poison.json"
    poison.write_text(json.dumps(_poison_job()))
    cli = str(VENV_BIN / "preview-worker")
    subprocess.run([cli, "enqueue", str(poison)], env=env, check=True, capture_output=True)
    _dead_letter_poison(cli, env)
    port = free_port()
    health_worker = subprocess.Popen(
        [cli, "run"],
        env={**env, "PREVIEW_QUEUE": "docs-health", "PREVIEW_HEALTH_PORT": str(port)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_port(port, health_worker)
        yield {**env, "PREVIEW_HEALTH_PORT": str(port)}
    finally:
        health_worker.send_signal(signal.SIGTERM)
        try:
            health_worker.wait(timeout=60)
        except subprocess.TimeoutExpired:
            health_worker.kill()
            health_worker.wait()


@pytest.fixture
def stub_bin(tmp_path: Path) -> Path:
    bindir = tmp_path / "stub-bin"
    bindir.mkdir()
    for tool in ("helm", "kubectl"):
        path = bindir / tool
        path.write_text(f"#!{sys.executable}\n{test_deploy.STUB}")
        path.chmod(0o755)
    return bindir


@pytest.fixture
def unreachable_cluster(tmp_path: Path) -> dict[str, str]:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: nowhere\n"
        f"clusters:\n- name: nowhere\n  cluster:\n    server: https://127.0.0.1:{port}\n"
        "contexts:\n- name: nowhere\n  context:\n    cluster: nowhere\n    user: nobody\n"
        "users:\n- name: nobody\n  user:\n    token: not-a-secret\n"
    )
    return {
        "KUBECONFIG": str(kubeconfig),
        "HELM_CACHE_HOME": str(tmp_path / "helm/cache"),
        "HELM_CONFIG_HOME": str(tmp_path / "helm/config"),
        "HELM_DATA_HOME": str(tmp_path / "helm/data"),
        "REDIS_URL": "redis://:placeholder@redis.invalid:6379/0",
    }


def _substitute(command: str) -> str:
    return (
        command.replace("JOB_ID", POISON)
        .replace("sha256:DIGEST", f"sha256:{DIGEST}")
        .replace("$IMAGE", "ghcr.io/preview-worker/preview-worker:0.2.0")
    )


def _bash(
    command: str, cwd: Path, env: dict[str, str], timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", "-o", "pipefail", "-c", command],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def _selected(doc: str, kind: str) -> list[str]:
    return [
        _substitute(classify(c.line)[1])
        for c in COMMANDS
        if c.doc == doc and classify(c.line)[0] == kind
    ]


# --------------------------------------------------------------------------- the runs


@pytest.mark.parametrize("doc", DOCS)
def test_cli_commands_run(doc: str, workspace: Path, queue_env: dict[str, str]) -> None:
    commands = _selected(doc, "cli")
    if doc != "docs/deployment.md":
        assert commands
    for command in commands:
        proc = _bash(command, workspace, queue_env)
        assert proc.returncode == 0, f"{doc}: {command}\n{proc.stdout}\n{proc.stderr}"
        assert "Traceback" not in proc.stderr
    if doc == "docs/troubleshooting.md":
        stats = _bash("preview-worker stats --json", workspace, queue_env)
        counts = json.loads(stats.stdout)
        # The re-drive in the doc took the poison job out of the dead-letter list.
        assert counts["dead"] == 0
        assert counts["waiting"] >= 1


@pytest.mark.parametrize("doc", DOCS)
def test_deploy_commands_run(doc: str, workspace: Path, stub_bin: Path, tmp_path: Path) -> None:
    env = {
        **os.environ,
        "PATH": _path_env(stub_bin),
        "STUB_SCENARIO": "healthy",
        "STUB_LOG": str(tmp_path / "calls.jsonl"),
    }
    before = (workspace / "values/production.yaml").read_text()
    for command in _selected(doc, "verify"):
        proc = _bash(command, workspace, env)
        assert proc.returncode == 0, f"{doc}: {command}\n{proc.stdout}\n{proc.stderr}"
        assert "healthy" in proc.stdout
    assert (workspace / "values/production.yaml").read_text() == before


def test_deployment_doc_cli_edits_values_then_lints(
    workspace: Path, queue_env: dict[str, str]
) -> None:
    helm = shutil.which("helm", path=_path_env())
    require_tool(helm is not None, "helm (make tools provisions .tools/bin/helm)")
    original = (workspace / "values/staging.yaml").read_text()
    production = (workspace / "values/production.yaml").read_text()
    for command in _selected("docs/deployment.md", "cli"):
        proc = _bash(command, workspace, queue_env)
        assert proc.returncode == 0, f"{command}\n{proc.stdout}\n{proc.stderr}"
    edited = (workspace / "values/staging.yaml").read_text()
    changed = [
        (a, b) for a, b in zip(original.splitlines(), edited.splitlines(), strict=True) if a != b
    ]
    assert changed, "set-image in the doc changed nothing"
    assert all(a.strip().startswith(("tag:", "repository:", "digest:")) for a, _ in changed)
    assert (workspace / "values/production.yaml").read_text() == production  # --dry-run
    for command in _selected("docs/deployment.md", "local"):
        proc = _bash(command, workspace, {**queue_env, "PATH": _path_env()})
        assert proc.returncode == 0, f"{command}\n{proc.stdout}\n{proc.stderr}"


@pytest.mark.parametrize("doc", DOCS)
def test_local_commands_run(doc: str, workspace: Path) -> None:
    env = {**os.environ, "PATH": _path_env()}
    for command in _selected(doc, "local"):
        tool = command.split()[0]
        require_tool(shutil.which(tool, path=env["PATH"]) is not None or "/" in tool, tool)
        proc = _bash(command, workspace, env)
        assert proc.returncode == 0, f"{doc}: {command}\n{proc.stdout}\n{proc.stderr}"


@pytest.mark.parametrize("doc", DOCS)
def test_cluster_commands_are_well_formed(
    doc: str, workspace: Path, unreachable_cluster: dict[str, str]
) -> None:
    commands = _selected(doc, "cluster")
    if not commands:
        return
    env = {**os.environ, "PATH": _path_env(), **unreachable_cluster}
    for tool in ("kubectl", "helm"):
        if any(c.startswith(tool) for c in commands):
            require_tool(shutil.which(tool, path=env["PATH"]) is not None, tool)
    for command in commands:
        argv = command
        if command.startswith("kubectl "):
            argv = command.replace("kubectl ", "kubectl --request-timeout=5s ", 1)
        proc = _bash(argv, workspace, env, timeout=60)
        output = proc.stdout + proc.stderr
        assert not SYNTAX_ERROR.search(output), f"{doc}: {command}\n{output}"
        assert proc.returncode == 0 or CLUSTER_OK.search(output), f"{doc}: {command}\n{output}"


def test_cluster_check_catches_a_misspelt_flag(
    workspace: Path, unreachable_cluster: dict[str, str]
) -> None:
    env = {**os.environ, "PATH": _path_env(), **unreachable_cluster}
    require_tool(shutil.which("kubectl", path=env["PATH"]) is not None, "kubectl")
    require_tool(shutil.which("helm", path=env["PATH"]) is not None, "helm")
    for bad in (
        "kubectl --request-timeout=5s -n preview rollout restat deploy/preview-worker",
        "kubectl --request-timeout=5s -n preview logs deploy/preview-worker --tial=5",
        "helm rollback preview-worker -n preview --wiat",
    ):
        proc = _bash(bad, workspace, env, timeout=60)
        assert SYNTAX_ERROR.search(proc.stdout + proc.stderr), bad
