"""Payload builders and waiting helpers shared by the queue and worker tests."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any


def job(
    job_id: str, *, priority: str | None = None, dry_run: bool = False, **request: Any
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "jobId": job_id,
        "projectId": "project-1",
        "requestId": f"req-{job_id}",
        "dryRun": dry_run,
        "previewRequest": {"steps": [], "assets": [], "audio": {}, **request},
    }
    if priority is not None:
        body["priority"] = priority
    return body


async def wait_for(
    check: Callable[[], Awaitable[bool]], *, timeout: float = 10.0, what: str = "condition"
) -> None:
    """Poll ``check`` until it is true; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.01)
