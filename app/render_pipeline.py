"""One render, start to finish, in the render process: plan, assets, stills, audio, encode,
poster, manifest. Synchronous on purpose: it runs in a child process (``app.render_process``),
never on the worker's event loop.
"""

from __future__ import annotations

import hashlib
import json
import os
import resource
import shutil
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from PIL import Image

from .assets import AssetPolicy, locate
from .encode import FORMATS, encode
from .frames import draw_scene, prefit
from .media import Samples, decode_audio, load_image, mix, probe_image
from .payload import PreviewJob
from .storyboard import AUDIO_RATE, Plan, build_plan

MANIFEST = "preview.json"
POSTER = "poster.png"
MEDIA_TYPES = {"mp4": "video/mp4", "webm": "video/webm", "png": "image/png"}


def render(
    job: PreviewJob, out_dir: Path, policy: AssetPolicy, worker_version: str
) -> dict[str, Any]:
    """Render ``job`` into the (empty, private) folder ``out_dir``; return the manifest."""
    started = time.perf_counter()
    plan = build_plan(job)
    fmt = FORMATS[plan.format]
    scratch = out_dir / ".work"
    try:
        paths = {aid: locate(asset, policy, scratch) for aid, asset in plan.assets.items()}
        images = {aid: path for aid, path in paths.items() if plan.assets[aid].type == "image"}
        for aid, path in images.items():
            probe_image(aid, path)  # fail fast; pixels are decoded scene by scene
        audio = _audio(plan, paths)
        video_path = out_dir / f"preview.{fmt.name}"
        poster_path = out_dir / POSTER
        frames = encode(
            video_path,
            fmt,
            width=plan.width,
            height=plan.height,
            fps=plan.fps,
            scenes=_stills(plan, images, poster_path),
            audio=audio,
            audio_rate=AUDIO_RATE,
        )
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    if frames != plan.total_frames:  # pragma: no cover - an encoder contract breach
        raise RuntimeError(f"wrote {frames} frames, planned {plan.total_frames}")
    manifest: dict[str, Any] = {
        "schemaVersion": 1,
        "jobId": plan.job_id,
        "projectId": plan.project_id,
        "requestId": plan.request_id,
        "title": plan.title,
        "durationSeconds": round(plan.duration_seconds, 6),
        "storyboardSeconds": round(plan.storyboard_seconds, 6),
        "capped": plan.capped,
        "frames": plan.total_frames,
        "scenes": len(plan.scenes),
        "resolution": plan.resolution,
        "width": plan.width,
        "height": plan.height,
        "fps": plan.fps,
        "format": fmt.name,
        "videoCodec": fmt.video_label,
        "audioCodec": fmt.audio_label if audio is not None else None,
        "captions": plan.captions,
        "files": {
            "video": _file_entry(video_path, MEDIA_TYPES[fmt.name]),
            "poster": _file_entry(poster_path, MEDIA_TYPES["png"]),
        },
        "renderer": "storyboard",
        "workerVersion": worker_version,
        "renderedAt": datetime.now(UTC).isoformat(timespec="seconds"),
        "renderSeconds": round(time.perf_counter() - started, 3),
    }
    _write_durably(out_dir / MANIFEST, json.dumps(manifest, indent=2).encode() + b"\n")
    _fsync_dir(out_dir)
    return manifest


def peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _audio(plan: Plan, paths: dict[str, Path]) -> Samples | None:
    if not plan.has_audio:
        return None
    total = plan.total_frames * AUDIO_RATE // plan.fps
    narration = music = None
    if plan.narration is not None:
        aid = plan.narration.asset_id
        narration = decode_audio(aid, paths[aid], rate=AUDIO_RATE, max_samples=total)
    volume = 0.0
    if plan.music is not None:
        aid = plan.music.asset_id
        music = decode_audio(aid, paths[aid], rate=AUDIO_RATE, max_samples=total)
        volume = plan.music.volume
    return mix(narration, music, volume, total)


def _stills(plan: Plan, images: dict[str, Path], poster: Path) -> Iterator[tuple[Image.Image, int]]:
    """One still per scene; an image is decoded when shown (consecutive scenes share it), so
    memory holds one source image at a time however long the storyboard."""
    shown: tuple[str, Image.Image] | None = None
    for scene in plan.scenes:
        image = None
        if scene.asset_id is not None:
            if shown is None or shown[0] != scene.asset_id:
                loaded = load_image(scene.asset_id, images[scene.asset_id])
                shown = (scene.asset_id, prefit(loaded, plan.width, plan.height))
            image = shown[1]
        still = draw_scene(scene, plan.width, plan.height, image, plan.captions)
        if scene.index == 0:
            still.save(poster, format="PNG")
        yield still, scene.frames


def _file_entry(path: Path, media_type: str) -> dict[str, Any]:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
        os.fsync(f.fileno())
    return {
        "name": path.name,
        "mediaType": media_type,
        "bytes": path.stat().st_size,
        "sha256": digest.hexdigest(),
    }


def _write_durably(path: Path, data: bytes) -> None:
    with path.open("wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
