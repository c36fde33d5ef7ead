"""``preview-worker demo``: an embedded Redis, a real worker, sample jobs, outcomes as they happen.

Everything it makes stays under the data folder (default ``demo-data/``): generated sample
assets, the rendered previews, nothing else. It exits 0 only when every job ended as expected.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis

from .embedded_redis import EmbeddedRedis, free_port
from .errors import PreviewWorkerError
from .logs import configure
from .queue import JobStatus, Queue
from .samples import sample_jobs, write_sample_assets
from .settings import Settings
from .worker import Worker, options_from

TERMINAL = {"completed", "dead", "failed"}


def _say(text: str) -> None:
    print(text, flush=True)


def _extra_jobs() -> tuple[dict[str, Any], dict[str, Any]]:
    dry = {
        "jobId": "demo-dry-run",
        "projectId": "demo",
        "requestId": "demo-dry",
        "dryRun": True,
        "previewRequest": {"steps": [], "assets": [], "audio": {}},
    }
    invalid = {
        "jobId": "demo-invalid",
        "projectId": "demo",
        "requestId": "demo-bad",
        "dryRun": False,
        "previewRequest": {"steps": [{"durationSeconds": -1}], "assets": [], "audio": {}},
    }
    return dry, invalid


def _describe(status: JobStatus) -> str:
    if status.state == "completed":
        result = status.result if isinstance(status.result, dict) else {}
        if result.get("dryRun"):
            return "completed (dry run: validated, not rendered)"
        video = result.get("video", {}).get("path")
        took = result.get("renderSeconds")
        suffix = f" in {took:.1f}s" if isinstance(took, int | float) else ""
        return f"completed{suffix} → {video}" if video else "completed"
    if status.state == "dead":
        return f"dead-lettered ({status.reason}: {status.lastError})"
    if status.state == "delayed":
        return f"attempt {status.attempts} failed ({status.reason}); retrying"
    if status.state == "active":
        return f"rendering (attempt {status.attempts})"
    return status.state


async def _demo(data_dir: Path, redis_url: str) -> int:
    assets = data_dir / "assets"
    output = data_dir / "data"
    write_sample_assets(assets)
    _say(f"sample assets written to {assets}/")
    health_port = free_port()
    settings = Settings.from_env(
        {},
        redis_url=redis_url,
        queue="preview-jobs-demo",
        data_dir=output,
        assets_dir=assets,
        concurrency=2,
        health_port=health_port,
        health_host="127.0.0.1",
        log_level="warning",
        log_format="text",
    )
    configure(settings.log_level, settings.log_format)
    worker = Worker(settings=settings)
    client = aioredis.Redis.from_url(redis_url)
    queue = Queue(client, name=settings.queue, defaults=options_from(settings))
    run = asyncio.create_task(worker.run(install_signals=False))
    _say(
        f"worker {worker.worker_id} running; health at http://127.0.0.1:{health_port}/api/preview/worker/health"
    )
    jobs = sample_jobs()
    dry, invalid = _extra_jobs()
    expected: dict[str, str] = {}
    for body in [*jobs, dry, invalid]:
        try:
            result = await queue.enqueue(body)
        except PreviewWorkerError as exc:
            _say(f"refused  {body['jobId']}: {exc}")
            continue
        expected[result.job_id] = "completed"
        _say(f"enqueued {result.job_id}")
    seen: dict[str, str] = {}
    deadline = time.monotonic() + 600
    try:
        while time.monotonic() < deadline:
            done = 0
            for job_id in expected:
                status = await queue.status(job_id)
                if status is None:
                    continue
                line = _describe(status)
                if seen.get(job_id) != line:
                    seen[job_id] = line
                    _say(f"  {job_id}: {line}")
                if status.state in TERMINAL:
                    done += 1
            if done == len(expected) or run.done():
                break
            await asyncio.sleep(0.1)
    finally:
        worker.request_shutdown()
        with contextlib.suppress(Exception):
            await run
        await client.aclose()
    ok = all(seen.get(j, "").startswith("completed") for j in expected)
    _say("")
    _say(f"previews are under {output / 'previews'}/")
    for path in sorted((output / "previews").glob("*/*/preview.*")):
        if path.suffix in {".mp4", ".webm"}:
            _say(f"  {path}  ({path.stat().st_size // 1024} KiB)")
    _say("worker drained and stopped; demo " + ("succeeded" if ok else "FAILED"))
    return 0 if ok else 1


def run_demo(data_dir: Path) -> int:
    with EmbeddedRedis() as redis:
        _say(f"embedded redis ({redis.binary}) on 127.0.0.1:{redis.port}")
        try:
            return asyncio.run(_demo(data_dir, redis.url))
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            return 130
