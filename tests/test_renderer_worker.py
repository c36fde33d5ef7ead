"""The storyboard renderer inside a real worker and Redis: loaded through its entry point, the
status record points at the files, client-side failures are dead-lettered without a retry, and
dry-run jobs never reach it."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis

from app.queue import Queue
from app.settings import Settings
from app.worker import Worker
from tests.redis_server import RedisServer
from tests.render_helpers import decode, make_image


def payload(job_id: str, *, dry_run: bool = False, uri: str = "board.png") -> dict[str, Any]:
    return {
        "jobId": job_id,
        "projectId": "integration",
        "requestId": job_id,
        "dryRun": dry_run,
        "previewRequest": {
            "title": "Worker test",
            "steps": [{"title": "Board", "text": "Hello.", "durationSeconds": 1, "assetId": "b"}],
            "assets": [{"id": "b", "type": "image", "uri": uri}],
            "audio": {},
            "options": {"resolution": "320x180", "fps": 12, "format": "mp4"},
        },
    }


async def test_worker_renders_and_reports_files(
    redis_server: RedisServer, redis_client: aioredis.Redis, tmp_path: Path
) -> None:
    assets = tmp_path / "assets"
    make_image(assets / "board.png")
    (assets / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"junk" * 40)
    settings = Settings.from_env(
        {},
        redis_url=redis_server.url,
        queue="render-it",
        data_dir=tmp_path / "data",
        assets_dir=assets,
        health_port=0,
        attempts=3,
        backoff_seconds=0.01,
    )
    queue = Queue(redis_client, name=settings.queue)
    for body in (
        payload("good"),
        payload("dry", dry_run=True),
        payload("broken", uri="broken.png"),
    ):
        await queue.enqueue(body)
    worker = Worker(settings=settings)
    assert "storyboard" in worker.handlers  # loaded through the entry point
    await asyncio.wait_for(worker.run(burst=True, install_signals=False), 120)

    good = await queue.status("good")
    assert good is not None and good.state == "completed", good
    result = good.result if isinstance(good.result, dict) else json.loads(good.result)
    video = Path(result["video"]["path"])
    assert (settings.data_dir / result["video"]["relativePath"]).samefile(video)
    out = await asyncio.to_thread(decode, video)
    assert (out.width, out.height, len(out.frames)) == (320, 180, 12)

    dry = await queue.status("dry")
    assert dry is not None and dry.state == "completed"
    projects = settings.data_dir / "previews" / "integration"
    assert sorted(p.name for p in projects.iterdir()) == ["good"]  # the dry run wrote nothing

    broken = await queue.status("broken")
    assert broken is not None and broken.state == "dead", broken
    assert broken.reason == "asset_corrupt"
    assert broken.attempts == 1  # a corrupt file is not retried
    assert broken.lastError is not None and "'b'" in broken.lastError
