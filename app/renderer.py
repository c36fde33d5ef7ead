"""The built-in ``storyboard`` handler: renders a job's preview in a child process.

The worker's event loop only awaits: the render (asset fetching, decoding, drawing, encoding)
runs in ``python -m app.render_process``, so lease renewal and the health endpoint keep
answering. Cancelling the handler (job timeout, shutdown) terminates the child, kills it after
a short grace, and deletes its staging folder. A finished render is published atomically as
``DATA_DIR/previews/<projectId>/<jobId>/`` holding ``preview.mp4`` or ``preview.webm``,
``poster.png`` and ``preview.json`` (the manifest); a re-render replaces that folder whole.

Failure reasons (all name the asset or option): ``invalid_options``, ``invalid_request``,
``asset_missing``, ``asset_forbidden``, ``asset_type_mismatch``, ``asset_too_large``,
``asset_corrupt``, ``asset_unsupported``, ``asset_rejected`` (permanent);
``asset_unavailable``, ``render_crashed``, ``render_failed`` (retried).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import msgspec

from . import __version__
from .errors import PermanentJobError, RetryableJobError
from .handlers import JobContext
from .payload import PreviewJob
from .publish import publish, staging_dir, sweep_stale
from .render_process import EXIT_JOB_ERROR, Work
from .settings import Settings
from .storyboard import build_plan

log = logging.getLogger(__name__)
PACKAGE_ROOT = Path(__file__).resolve().parent.parent
STDERR_TAIL = 600
CHILD_ENV_DROP = frozenset({"REDIS_URL"})  # the render needs no secret


class StoryboardRenderer:
    """Entry point ``storyboard`` of ``preview_worker.handlers``."""

    def __init__(
        self, settings: Settings, *, python: str | None = None, terminate_grace: float = 2.0
    ) -> None:
        self.settings = settings
        self.python = python or sys.executable
        self.terminate_grace = terminate_grace

    async def __call__(self, ctx: JobContext) -> Mapping[str, Any]:
        job = ctx.job
        if job.dry_run:  # the worker short-circuits these; never render one regardless
            return {"handler": "storyboard", "rendered": False, "dryRun": True}
        build_plan(job)  # reject a bad request before spawning anything
        project_dir = self.settings.data_dir / "previews" / job.project_id
        final = project_dir / job.job_id
        staging = await asyncio.to_thread(self._prepare, project_dir, job.job_id)
        try:
            reply = await self._run_child(work_for(job, staging, self.settings))
            previous = publish(staging, final)  # renames only: fast, and never half-done
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        if previous is not None:
            await asyncio.to_thread(shutil.rmtree, previous, True)
        manifest: dict[str, Any] = reply["manifest"]
        log.info(
            "rendered preview %s/%s: %ss of video in %ss, peak RSS %d MiB",
            job.project_id,
            job.job_id,
            manifest["durationSeconds"],
            manifest["renderSeconds"],
            int(reply.get("peakRssBytes", 0)) // (1024 * 1024),
        )
        return result_for(final, self.settings.data_dir, manifest)

    def _prepare(self, project_dir: Path, job_id: str) -> Path:
        project_dir.mkdir(parents=True, exist_ok=True)
        stale_after = self.settings.job_timeout_seconds + self.settings.lease_seconds + 60
        for leftover in sweep_stale(project_dir, stale_after):
            log.info("removed stale render leftover %s", leftover)
        return staging_dir(project_dir, job_id)

    async def _run_child(self, work: Work) -> dict[str, Any]:
        env = {k: v for k, v in os.environ.items() if k not in CHILD_ENV_DROP}
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(PACKAGE_ROOT), env.get("PYTHONPATH", "")) if p
        )
        proc = await asyncio.create_subprocess_exec(
            self.python,
            "-m",
            "app.render_process",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=env,
            start_new_session=True,  # a Ctrl-C meant for the worker must not kill renders
        )
        try:
            out, err = await proc.communicate(msgspec.json.encode(work))
        except BaseException:
            await self._stop(proc)
            raise
        return _reply(proc.returncode, out, err)

    async def _stop(self, proc: asyncio.subprocess.Process) -> None:
        try:
            if proc.returncode is None:
                proc.terminate()
                try:
                    await asyncio.wait_for(proc.wait(), self.terminate_grace)
                except TimeoutError:
                    proc.kill()
                    await proc.wait()
        except ProcessLookupError:
            pass
        finally:
            if proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()


def work_for(job: PreviewJob, out_dir: Path, settings: Settings) -> Work:
    return Work(
        job=job,
        out_dir=str(out_dir.absolute()),
        assets_dir=str(settings.assets_dir.absolute()),
        asset_hosts=list(settings.asset_hosts),
        asset_max_bytes=settings.asset_max_bytes,
        asset_timeout_seconds=settings.asset_timeout_seconds,
        worker_version=__version__,
        parent_pid=os.getpid(),
    )


def _last_line(data: bytes) -> bytes:
    lines = [line for line in data.splitlines() if line.strip()]
    return lines[-1] if lines else b""


def _reply(returncode: int | None, out: bytes, err: bytes) -> dict[str, Any]:
    tail = err.decode("utf-8", "replace").strip()[-STDERR_TAIL:]
    if returncode is not None and returncode < 0:
        name = signal.Signals(-returncode).name
        hint = " (out of memory?)" if -returncode == signal.SIGKILL else ""
        raise RetryableJobError("render_crashed", f"render process killed by {name}{hint}")
    if returncode in (0, EXIT_JOB_ERROR):
        try:
            reply: dict[str, Any] = msgspec.json.decode(_last_line(out))
        except msgspec.DecodeError:
            reply = {}
        if returncode == 0 and reply.get("ok") is True:
            return reply
        if returncode == EXIT_JOB_ERROR and reply.get("ok") is False:
            reason, message = str(reply.get("reason")), str(reply.get("message"))
            if reply.get("retryable"):
                raise RetryableJobError(reason, message)
            raise PermanentJobError(reason, message)
    last = tail.splitlines()[-1] if tail else "no output"
    raise RetryableJobError(
        "render_failed", f"render process exited with status {returncode}: {last}"
    )


def result_for(final: Path, data_dir: Path, manifest: Mapping[str, Any]) -> dict[str, Any]:
    """The status-record result: where the files are (absolute and DATA_DIR-relative)."""
    root = final.absolute()
    relative = final.relative_to(data_dir)

    def where(name: str) -> dict[str, str]:
        return {"path": str(root / name), "relativePath": str(relative / name)}

    files = manifest["files"]
    return {
        "handler": "storyboard",
        "rendered": True,
        "dir": str(root),
        "relativeDir": str(relative),
        "video": {
            **where(files["video"]["name"]),
            "bytes": files["video"]["bytes"],
            "sha256": files["video"]["sha256"],
        },
        "poster": {
            **where(files["poster"]["name"]),
            "bytes": files["poster"]["bytes"],
            "sha256": files["poster"]["sha256"],
        },
        "manifest": where("preview.json"),
        "durationSeconds": manifest["durationSeconds"],
        "resolution": manifest["resolution"],
        "fps": manifest["fps"],
        "format": manifest["format"],
        "videoCodec": manifest["videoCodec"],
        "audioCodec": manifest["audioCodec"],
        "renderSeconds": manifest["renderSeconds"],
    }
