"""The image's runtime contract without a container engine.

The wheel is built from exactly what the Dockerfile copies (pyproject.toml, README.md, app/),
installed into a fresh venv of the system Python, and run under bubblewrap as UID/GID 10001
with a read-only root: only /tmp (a tmpfs) and /data (DATA_DIR) are writable, as with the
chart's ``readOnlyRootFilesystem``. When the test runs as root it first drops to 10001 with
``setpriv``, so the worker has no privilege outside the sandbox either.

The worker must render a real preview into /data, answer /readyz, and on SIGTERM drain (a
render in flight finishes) and exit 0.

Wheels of the dependencies are cached in ``.tools/wheelhouse`` (filled from PyPI once, by the
fresh venv's own pip so they match its Python); later runs install offline.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import tomllib
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import require_tool
from tests.redis_server import RedisServer, free_port

ROOT = Path(__file__).resolve().parent.parent
TOOLS = ROOT / ".tools"
WHEELHOUSE = TOOLS / "wheelhouse"
UID = GID = 10001
BUILD_CONTEXT = ("pyproject.toml", "README.md", "app")
DEADLINE_SECONDS = 120.0


def _job(job_id: str, seconds: float, resolution: str, fps: int) -> dict[str, Any]:
    return {
        "jobId": job_id,
        "projectId": "sandbox",
        "requestId": f"req-{job_id}",
        "dryRun": False,
        "previewRequest": {
            "title": "Sandbox",
            "steps": [
                {"title": "Setup", "text": "Place the board.", "durationSeconds": seconds},
                {"title": "Play", "text": "Take turns.", "durationSeconds": seconds},
            ],
            "assets": [],
            "audio": {},
            "options": {"resolution": resolution, "fps": fps, "format": "mp4"},
        },
    }


def _system_python() -> str | None:
    """A Python >= 3.11 that UID 10001 can run (the pyenv/venv one may live under /root)."""
    for candidate in ("/usr/bin/python3", "/usr/local/bin/python3", "/usr/bin/python3.11"):
        if not os.access(candidate, os.X_OK):
            continue
        proc = subprocess.run(
            [candidate, "-c", "import sys, venv; print(sys.version_info >= (3, 11))"],
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.stdout.strip() == "True":
            return candidate
    return None


def _run(argv: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(argv, capture_output=True, text=True, check=False, **kwargs)
    assert proc.returncode == 0, f"{argv[:4]}…: {proc.stdout}\n{proc.stderr}"
    return proc


@pytest.fixture(scope="module")
def sandbox_root() -> Iterator[Path]:
    """A world-traversable scratch folder (pytest's tmp dirs are private to their owner)."""
    require_tool(shutil.which("bwrap") is not None, "bwrap (Debian package bubblewrap)")
    if os.geteuid() == 0:
        require_tool(shutil.which("setpriv") is not None, "setpriv (util-linux)")
    # Not under the checkout (which may sit in /tmp, hidden by the sandbox's fresh /tmp, or
    # under a home folder UID 10001 cannot traverse) but in /var/tmp, traversable by anyone.
    path = Path(tempfile.mkdtemp(prefix="preview-worker-sandbox-", dir="/var/tmp"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def installed(sandbox_root: Path) -> Path:
    """A fresh venv with the wheel built from the Docker build context; returns its bin/."""
    python = _system_python()
    require_tool(python is not None, "a system python3 >= 3.11 with venv (python3-venv)")
    assert python is not None
    context = sandbox_root / "context"
    context.mkdir()
    for name in BUILD_CONTEXT:
        source = ROOT / name
        assert source.exists(), f"{name} is in the image build context but missing"
        if source.is_dir():
            shutil.copytree(source, context / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(source, context / name)
    dist = sandbox_root / "dist"
    _run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(dist), str(context)])
    (wheel,) = dist.glob("preview_worker-*.whl")
    venv = sandbox_root / "venv"
    _run([python, "-m", "venv", str(venv)])
    pip = [str(venv / "bin/python"), "-m", "pip", "--disable-pip-version-check"]
    install = [*pip, "install", "-q", "--only-binary=:all:", "--no-index"]
    install += ["--find-links", str(WHEELHOUSE), str(wheel)]
    if subprocess.run(install, capture_output=True, check=False).returncode != 0:
        deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
        WHEELHOUSE.mkdir(parents=True, exist_ok=True)
        _run([*pip, "wheel", "-q", "--only-binary=:all:", "-w", str(WHEELHOUSE), *deps])
        _run(install)
    for path in (sandbox_root, venv):
        for sub in [path, *path.rglob("*")]:
            if sub.is_dir():
                sub.chmod(sub.stat().st_mode | 0o755)
    return venv / "bin"


def _bwrap_argv(data: Path, env: dict[str, str], info_fd: int, command: list[str]) -> list[str]:
    argv: list[str] = []
    if os.geteuid() == 0:
        argv += ["setpriv", f"--reuid={UID}", f"--regid={GID}", "--clear-groups", "--"]
    argv += ["bwrap", "--unshare-user", "--uid", str(UID), "--gid", str(GID)]
    argv += ["--unshare-ipc", "--unshare-uts", "--die-with-parent", "--info-fd", str(info_fd)]
    # Root: a tmpfs holding read-only binds of every top-level folder, then made read-only
    # itself, so /data can be a mount point. Network shared: Redis listens on loopback.
    for entry in sorted(Path("/").iterdir()):
        if entry.name in {"tmp", "proc", "dev", "data"}:
            continue
        if entry.is_symlink():
            argv += ["--symlink", os.readlink(entry), str(entry)]
        elif entry.is_dir():
            argv += ["--ro-bind", str(entry), str(entry)]
    argv += ["--tmpfs", "/tmp", "--dev", "/dev", "--proc", "/proc"]
    argv += ["--dir", "/data", "--bind", str(data), "/data", "--remount-ro", "/"]
    argv += ["--clearenv"]
    for key, value in env.items():
        argv += ["--setenv", key, value]
    return [*argv, *command]


def _wait(what: str, check: Callable[[], bool], proc: subprocess.Popen[str] | None = None) -> None:
    deadline = time.monotonic() + DEADLINE_SECONDS
    while time.monotonic() < deadline:
        if check():
            return
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"worker exited ({proc.returncode}) while waiting for {what}")
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def _status(bindir: Path, redis_url: str, job_id: str) -> dict[str, Any]:
    proc = _run(
        [str(bindir / "preview-worker"), "status", job_id, "--json"],
        env={**os.environ, "REDIS_URL": redis_url},
    )
    doc: dict[str, Any] = json.loads(proc.stdout)
    return doc


def _ready(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as resp:
            return int(resp.status) == 200
    except (urllib.error.URLError, OSError):
        return False


def _sandbox_env(redis_url: str, port: int) -> dict[str, str]:
    return {
        "PATH": "/usr/bin:/bin",
        "REDIS_URL": redis_url,
        "DATA_DIR": "/data",
        "PREVIEW_ASSETS_DIR": "/data/assets",
        "HOME": "/tmp",
        "XDG_CACHE_HOME": "/tmp/.cache",
        "PYTHONDONTWRITEBYTECODE": "1",
        "PREVIEW_HEALTH_HOST": "127.0.0.1",
        "PREVIEW_HEALTH_PORT": str(port),
        "PREVIEW_LOG_FORMAT": "text",
        "PREVIEW_SHUTDOWN_GRACE_SECONDS": "25",
        "PREVIEW_ASSET_HOSTS": os.environ.get("SANDBOX_ASSET_HOST", ""),
        "PREVIEW_ASSET_TIMEOUT_SECONDS": "120",
    }


def _data_dir(sandbox_root: Path, name: str) -> Path:
    data = sandbox_root / name
    data.mkdir()
    if os.geteuid() == 0:
        os.chown(data, UID, GID)
    return data


def test_only_tmp_and_data_are_writable(installed: Path, sandbox_root: Path) -> None:
    data = _data_dir(sandbox_root, "probe-data")
    probe = (
        "import json, os\n"
        "result = {'uid': os.getuid(), 'gid': os.getgid()}\n"
        f"for path in ['/tmp', '/data', '/', '/etc', '/opt', {str(installed)!r}, "
        f"{str(ROOT)!r}, '/var/tmp']:\n"
        "    try:\n"
        "        with open(os.path.join(path, '.probe'), 'w') as f: f.write('x')\n"
        "        result[path] = 'writable'\n"
        "    except OSError as exc:\n"
        "        result[path] = exc.strerror\n"
        "print(json.dumps(result))\n"
    )
    env = _sandbox_env("redis://127.0.0.1:1/0", 0)
    read, write = os.pipe()
    try:
        argv = _bwrap_argv(data, env, write, [str(installed / "python"), "-c", probe])
        proc = subprocess.run(argv, capture_output=True, text=True, pass_fds=(write,), check=False)
    finally:
        os.close(write)
        os.close(read)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert (result.pop("uid"), result.pop("gid")) == (UID, GID)
    writable = sorted(path for path, outcome in result.items() if outcome == "writable")
    assert writable == ["/data", "/tmp"], result
    assert (data / ".probe").exists()


class SandboxWorker:
    """``preview-worker run`` under bubblewrap; ``stop()`` sends SIGTERM to the worker itself
    (bwrap does not forward signals; in the image tini does) and returns its exit code."""

    def __init__(self, installed: Path, sandbox_root: Path, redis_url: str, name: str) -> None:
        self.installed = installed
        self.redis_url = redis_url
        self.data = _data_dir(sandbox_root, name)
        self.port = free_port()
        self.log = sandbox_root / f"{name}.log"
        cli = str(installed / "preview-worker")
        read, write = os.pipe()
        argv = _bwrap_argv(self.data, _sandbox_env(redis_url, self.port), write, [cli, "run"])
        with self.log.open("w") as log_file:
            self.proc = subprocess.Popen(
                argv, stdout=log_file, stderr=subprocess.STDOUT, text=True, pass_fds=(write,)
            )
        os.close(write)
        with os.fdopen(read) as info:
            self.child = int(json.load(info)["child-pid"])

    def enqueue(self, job: dict[str, Any]) -> None:
        path = self.data.parent / f"{job['jobId']}.json"
        path.write_text(json.dumps(job))
        env = {**os.environ, "REDIS_URL": self.redis_url}
        _run([str(self.installed / "preview-worker"), "enqueue", str(path)], env=env)

    def status(self, job_id: str) -> dict[str, Any]:
        return _status(self.installed, self.redis_url, job_id)

    def wait_state(self, job_id: str, states: set[str]) -> dict[str, Any]:
        _wait(f"{job_id} in {states}", lambda: self.status(job_id)["state"] in states, self.proc)
        return self.status(job_id)

    def stop(self) -> int:
        os.kill(self.child, signal.SIGTERM)
        return self.proc.wait(timeout=DEADLINE_SECONDS)

    def output(self) -> str:
        return self.log.read_text()

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def worker(
    installed: Path, sandbox_root: Path, redis_server: RedisServer, request: pytest.FixtureRequest
) -> Iterator[SandboxWorker]:
    name = request.node.name.removeprefix("test_")[:40]
    running = SandboxWorker(installed, sandbox_root, redis_server.url, name)
    try:
        yield running
    finally:
        running.close()


def test_worker_renders_as_10001_and_exits_0_on_sigterm(worker: SandboxWorker) -> None:
    worker.enqueue(_job("quick", 1, "160x90", 4))
    _wait("readiness", lambda: _ready(worker.port), worker.proc)
    status = worker.wait_state("quick", {"completed", "dead"})
    assert status["state"] == "completed", worker.output()
    video = worker.data / status["result"]["video"]["relativePath"]
    assert video.stat().st_size == status["result"]["video"]["bytes"] > 0
    if os.geteuid() == 0:
        assert video.stat().st_uid == UID
    code = worker.stop()
    output = worker.output()
    assert code == 0, output
    assert "shutdown requested: draining" in output
    assert "worker stopped" in output
    assert "Traceback" not in output


class StallingAssetServer:
    """Serves one PNG, but only once released: a render is provably in flight meanwhile."""

    def __init__(self) -> None:
        import io
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        from PIL import Image

        buffer = io.BytesIO()
        Image.new("RGB", (64, 36), (40, 120, 200)).save(buffer, format="PNG")
        png = buffer.getvalue()
        self.requested = threading.Event()
        self.release = threading.Event()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer.requested.set()
                outer.release.wait(DEADLINE_SECONDS)
                self.send_response(200)
                self.send_header("Content-Type", "image/png")
                self.send_header("Content-Length", str(len(png)))
                self.end_headers()
                self.wfile.write(png)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.host = f"127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def asset_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[StallingAssetServer]:
    server = StallingAssetServer()
    monkeypatch.setenv("SANDBOX_ASSET_HOST", server.host)
    try:
        yield server
    finally:
        server.close()


def test_render_in_flight_at_sigterm_finishes_within_the_grace(
    asset_server: StallingAssetServer, worker: SandboxWorker
) -> None:
    worker.enqueue(_job("first", 1, "160x90", 4))
    worker.wait_state("first", {"completed"})
    job = _job("held", 1, "160x90", 4)
    job["previewRequest"]["assets"] = [
        {"id": "board", "type": "image", "uri": f"http://{asset_server.host}/board.png"}
    ]
    job["previewRequest"]["steps"][0]["assetId"] = "board"
    worker.enqueue(job)
    _wait("the render to fetch its asset", asset_server.requested.is_set, worker.proc)
    os.kill(worker.child, signal.SIGTERM)
    _wait("the drain to begin", lambda: "shutdown requested" in worker.output(), worker.proc)
    asset_server.release.set()
    code = worker.proc.wait(timeout=DEADLINE_SECONDS)
    output = worker.output()
    assert code == 0, output
    assert "in_flight=1" in output
    assert "worker stopped" in output
    assert worker.status("held")["state"] == "completed", output
