"""Shared helpers of the renderer tests: media generated on the spot, a loopback HTTP server,
decoding of produced files, and a look at this process's children."""

from __future__ import annotations

import asyncio
import http.server
import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, cast

import av
import numpy as np
import numpy.typing as npt
from PIL import Image, ImageDraw

from app.handlers import JobContext
from app.payload import PreviewJob, decode_job
from app.samples import music_samples, narration_samples, write_encoded_audio, write_wav
from app.settings import Settings

RGB = npt.NDArray[np.uint8]


def make_image(path: Path, fmt: str = "PNG", size: tuple[int, int] = (320, 240)) -> Path:
    image = Image.new("RGB", size, (30, 120, 200))
    draw = ImageDraw.Draw(image)
    draw.ellipse((20, 20, size[0] - 20, size[1] - 20), fill=(240, 200, 40))
    draw.rectangle((size[0] // 3, size[1] // 3, size[0] // 2, size[1] // 2), fill=(200, 30, 30))
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, format=fmt)
    return path


def make_wav(path: Path, seconds: float = 2.0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_wav(path, narration_samples(seconds, 22_050), 22_050)
    return path


def make_ogg(path: Path, seconds: float = 1.0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_encoded_audio(path, music_samples(seconds, 48_000), 48_000, "ogg", "libopus")
    return path


def job(
    steps: list[dict[str, Any]],
    assets: list[dict[str, Any]] | None = None,
    audio: dict[str, Any] | None = None,
    *,
    job_id: str = "job-1",
    project_id: str = "proj",
    **options: Any,
) -> PreviewJob:
    payload = {
        "jobId": job_id,
        "projectId": project_id,
        "requestId": "req-1",
        "dryRun": False,
        "previewRequest": {
            "title": "Test preview",
            "description": "A preview rendered by the tests.",
            "steps": steps,
            "assets": assets or [],
            "audio": audio or {},
            "options": {"resolution": "320x180", "fps": 12, **options},
        },
    }
    return decode_job(json.dumps(payload), max_bytes=1 << 20)


def context(preview_job: PreviewJob, settings: Settings) -> JobContext:
    return JobContext(job=preview_job, attempt=1, settings=settings, worker_id="test-worker")


@dataclass
class Decoded:
    format_name: str
    video_codec: str
    audio_codec: str | None
    width: int
    height: int
    frames: list[RGB]
    frame_times: list[float]
    audio_seconds: float
    audio_rms: float

    def frame_at(self, seconds: float) -> RGB:
        best = min(range(len(self.frame_times)), key=lambda i: abs(self.frame_times[i] - seconds))
        return self.frames[best]


def decode(path: Path, keep_every: int = 1) -> Decoded:
    """Decode every video frame (keeping every ``keep_every``-th as RGB) and the audio."""
    with av.open(str(path)) as container:
        vstream = container.streams.video[0]
        frames: list[RGB] = []
        times: list[float] = []
        for i, frame in enumerate(container.decode(vstream)):
            times.append(float(frame.time))
            if i % keep_every == 0:
                frames.append(cast(RGB, frame.to_ndarray(format="rgb24")))
            else:
                frames.append(np.zeros(0, np.uint8))
        width, height = vstream.codec_context.width, vstream.codec_context.height
        codec = vstream.codec_context.name
        format_name = container.format.name
    audio_codec = None
    samples = 0
    squares = 0.0
    with av.open(str(path)) as container:
        if container.streams.audio:
            astream = container.streams.audio[0]
            audio_codec = astream.codec_context.name
            rate = astream.codec_context.sample_rate
            for aframe in container.decode(astream):
                data = aframe.to_ndarray().astype(np.float64)
                samples += aframe.samples
                squares += float(np.sum(data**2)) / max(1, data.shape[0])
            audio_seconds = samples / rate
        else:
            audio_seconds = 0.0
    rms = (squares / samples) ** 0.5 if samples else 0.0
    return Decoded(
        format_name, codec, audio_codec, width, height, frames, times, audio_seconds, rms
    )


def child_pids() -> list[int]:
    """Live children of this process (all threads), from /proc."""
    pids: list[int] = []
    for task in Path("/proc/self/task").iterdir():
        try:
            pids += [int(p) for p in (task / "children").read_text().split()]
        except OSError:
            continue
    return pids


def render_children() -> list[int]:
    found = []
    for pid in child_pids():
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if b"app.render_process" in cmdline:
            found.append(pid)
    return found


async def wait_for(condition: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


def pid_gone(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] == "Z"


class _Handler(http.server.BaseHTTPRequestHandler):
    routes: ClassVar[dict[str, tuple[int, bytes, dict[str, str]]]] = {}

    def do_GET(self) -> None:
        status, body, headers = self.routes.get(self.path, (404, b"not found", {}))
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        if "Content-Length" not in headers:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        return


@dataclass
class AssetServer:
    host: str
    port: int
    routes: dict[str, tuple[int, bytes, dict[str, str]]]

    @property
    def netloc(self) -> str:
        return f"{self.host}:{self.port}"

    def url(self, path: str) -> str:
        return f"http://{self.netloc}{path}"


@contextmanager
def asset_server() -> Iterator[AssetServer]:
    """A loopback HTTP server in a thread; set ``routes[path] = (status, body, headers)``."""
    routes: dict[str, tuple[int, bytes, dict[str, str]]] = {}
    handler = type("Handler", (_Handler,), {"routes": routes})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield AssetServer("127.0.0.1", server.server_address[1], routes)
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def leftovers(project_dir: Path) -> list[str]:
    if not project_dir.is_dir():
        return []
    return sorted(p.name for p in project_dir.iterdir() if p.name.startswith("."))
