"""End to end through the ``storyboard`` handler: every produced file is decoded and checked."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import signal
import sys
import time
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from app.errors import PermanentJobError, RetryableJobError
from app.frames import caption_box
from app.handlers import GROUP
from app.renderer import StoryboardRenderer
from app.settings import Settings
from tests.render_helpers import (
    asset_server,
    context,
    decode,
    job,
    leftovers,
    make_image,
    make_ogg,
    make_wav,
    pid_gone,
    render_children,
    wait_for,
)

ASSETS = [
    {"id": "board", "type": "image", "uri": "board.png"},
    {"id": "photo", "type": "image", "uri": "photo.jpg"},
    {"id": "voice", "type": "audio", "uri": "voice.wav"},
    {"id": "theme", "type": "audio", "uri": "theme.ogg"},
]
STEPS = [
    {
        "title": "The board",
        "text": "Put the board in the middle.",
        "durationSeconds": 1,
        "assetId": "board",
    },
    {
        "title": "Pieces",
        "text": "Everyone takes four pieces.",
        "durationSeconds": 1,
        "assetId": "photo",
    },
    {"title": "Go", "text": "The youngest player starts.", "durationSeconds": 1},
]


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    assets = tmp_path / "assets"
    make_image(assets / "board.png", "PNG", (400, 300))
    make_image(assets / "photo.jpg", "JPEG", (300, 400))
    make_wav(assets / "voice.wav", 2.0)
    make_ogg(assets / "theme.ogg", 0.7)
    return Settings(data_dir=tmp_path / "data", assets_dir=assets)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def check_manifest(result: dict[str, Any]) -> dict[str, Any]:
    folder = Path(result["dir"])
    manifest: dict[str, Any] = json.loads((folder / "preview.json").read_text())
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        ["preview.json", "poster.png", manifest["files"]["video"]["name"]]
    )
    for entry in manifest["files"].values():
        path = folder / entry["name"]
        assert entry["bytes"] == path.stat().st_size
        assert entry["sha256"] == sha256(path)
    assert result["video"]["sha256"] == manifest["files"]["video"]["sha256"]
    return manifest


@pytest.mark.parametrize(
    ("fmt", "audio", "cap", "codecs", "container"),
    [
        (
            "mp4",
            {"narration": {"assetId": "voice"}, "music": {"assetId": "theme"}},
            30,
            ("h264", "aac"),
            "mp4",
        ),
        ("webm", {}, 2.5, ("vp9", None), "webm"),
        ("webm", {"music": {"assetId": "theme", "volume": 0.8}}, 30, ("vp9", "opus"), "webm"),
        ("mp4", {"narration": {"assetId": "voice"}}, 1.5, ("h264", "aac"), "mp4"),
    ],
)
async def test_rendered_file_is_what_was_asked(
    settings: Settings,
    fmt: str,
    audio: dict[str, Any],
    cap: float,
    codecs: tuple[str, str | None],
    container: str,
) -> None:
    fps = 12
    preview = job(STEPS, ASSETS, audio, format=fmt, fps=fps, maxDurationSeconds=cap)
    result = dict(await StoryboardRenderer(settings)(context(preview, settings)))

    video = Path(result["video"]["path"])
    assert video.is_absolute()
    assert result["video"]["relativePath"] == f"previews/proj/job-1/preview.{fmt}"
    assert (settings.data_dir / result["video"]["relativePath"]).samefile(video)
    manifest = check_manifest(result)
    expected = min(3.0, cap)
    assert manifest["durationSeconds"] == pytest.approx(expected, abs=1 / fps)
    assert manifest["capped"] == (cap < 3.0)
    assert (manifest["videoCodec"], manifest["audioCodec"]) == codecs
    assert (manifest["jobId"], manifest["projectId"], manifest["requestId"]) == (
        "job-1",
        "proj",
        "req-1",
    )
    assert manifest["resolution"] == "320x180"
    assert manifest["fps"] == fps

    out = decode(video)
    assert container in out.format_name.split(",")
    assert (out.width, out.height) == (320, 180)
    assert out.video_codec == codecs[0]
    assert out.audio_codec == {"aac": "aac", "opus": "opus", None: None}[codecs[1]]
    assert abs(len(out.frames) / fps - expected) <= 1 / fps
    assert abs(out.frame_times[-1] + 1 / fps - expected) <= 1 / fps
    for frame in out.frames:
        assert float(frame.std()) > 10  # not blank
    if codecs[1] is None:
        assert out.audio_seconds == 0
    else:
        assert out.audio_seconds == pytest.approx(expected, abs=0.1)
        assert out.audio_rms > 0.01  # the narration / music is audible


async def test_captions_change_pixels_only_in_the_caption_box(settings: Settings) -> None:
    steps = [
        {
            "title": "Caption",
            "text": "Roll two dice and move that many spaces.",
            "durationSeconds": 1,
            "assetId": "board",
        }
    ]
    renderer = StoryboardRenderer(settings)
    frames = []
    posters = []
    for captions, job_id in ((True, "with"), (False, "without")):
        preview = job(steps, ASSETS, job_id=job_id, format="mp4", includeCaptions=captions)
        result = await renderer(context(preview, settings))
        frames.append(decode(Path(result["video"]["path"])).frame_at(0.5).astype(np.int16))
        with Image.open(result["poster"]["path"]) as poster:
            posters.append(np.asarray(poster.convert("RGB"), dtype=np.int16))
    x0, y0, x1, y1 = caption_box(320, 180)
    inside = np.zeros((180, 320), dtype=bool)
    inside[y0:y1, x0:x1] = True
    diff = np.abs(frames[0] - frames[1]).mean(axis=2)
    assert diff[inside].mean() > 10
    assert diff[~inside].mean() < 2
    poster_diff = np.abs(posters[0] - posters[1]).sum(axis=2)
    assert poster_diff[inside].any()
    assert not poster_diff[~inside].any()  # lossless poster: nothing else moved


async def test_empty_storyboard_renders_a_title_card(settings: Settings) -> None:
    result = await StoryboardRenderer(settings)(context(job([], fps=10), settings))
    manifest = check_manifest(dict(result))
    assert manifest["durationSeconds"] == pytest.approx(3.0)
    out = decode(Path(result["video"]["path"]))
    assert len(out.frames) == 30
    assert float(out.frames[15].std()) > 5
    assert out.audio_codec is None


async def test_rerender_replaces_the_folder_whole(settings: Settings) -> None:
    renderer = StoryboardRenderer(settings)
    first = await renderer(context(job(STEPS, ASSETS, format="mp4"), settings))
    folder = Path(first["dir"])
    (folder / "stray.txt").write_text("from an older render")
    second = await renderer(context(job(STEPS[:1], ASSETS, format="webm"), settings))
    assert second["dir"] == first["dir"]
    assert not (folder / "stray.txt").exists()
    assert not (folder / "preview.mp4").exists()
    manifest = check_manifest(dict(second))
    assert manifest["format"] == "webm"
    assert leftovers(folder.parent) == []
    third = await renderer(context(job(STEPS[:1], ASSETS, format="webm"), settings))
    assert check_manifest(dict(third))["durationSeconds"] == manifest["durationSeconds"]
    assert leftovers(folder.parent) == []


async def test_stale_leftovers_are_swept_and_live_ones_kept(settings: Settings) -> None:
    project = settings.data_dir / "previews" / "proj"
    stale = project / ".tmp-job-1-crashed"
    stale.mkdir(parents=True)
    (stale / "preview.mp4").write_bytes(b"half")
    old = time.time() - settings.job_timeout_seconds - settings.lease_seconds - 3600
    os.utime(stale, (old, old))
    live = project / ".tmp-other-running"
    live.mkdir()
    await StoryboardRenderer(settings)(context(job(STEPS[:1], ASSETS), settings))
    assert not stale.exists()
    assert live.exists()


def staging(settings: Settings) -> list[Path]:
    project = settings.data_dir / "previews" / "proj"
    return sorted(project.glob(".tmp-job-1-*")) if project.is_dir() else []


def encoding_started(settings: Settings) -> bool:
    return any(list(d.glob("preview.*")) for d in staging(settings))


LONG = [{"title": f"Step {i}", "text": "A long step.", "durationSeconds": 10} for i in range(3)]


async def test_killed_render_leaves_no_visible_output(settings: Settings) -> None:
    renderer = StoryboardRenderer(settings)
    preview = job(LONG, ASSETS, resolution="1280x720", fps=24, format="mp4")
    task = asyncio.create_task(renderer(context(preview, settings)))
    await wait_for(
        lambda: len(render_children()) == 1 and encoding_started(settings), "the encoder to start"
    )
    (pid,) = render_children()
    os.kill(pid, signal.SIGSTOP)  # freeze it mid-encode: no race with its completion
    [folder] = staging(settings)
    assert not (folder / "preview.json").exists()
    os.kill(pid, signal.SIGKILL)
    with pytest.raises(RetryableJobError) as info:
        await task
    assert info.value.reason == "render_crashed"
    assert "SIGKILL" in info.value.message
    project = settings.data_dir / "previews" / "proj"
    assert not (project / "job-1").exists()
    assert leftovers(project) == []


async def test_cancel_stops_the_encoder_and_frees_its_folder(settings: Settings) -> None:
    renderer = StoryboardRenderer(settings)
    preview = job(LONG, ASSETS, resolution="1280x720", fps=24, format="webm")
    task = asyncio.create_task(renderer(context(preview, settings)))
    await wait_for(
        lambda: len(render_children()) == 1 and encoding_started(settings), "the encoder to start"
    )
    (pid,) = render_children()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert pid_gone(pid)
    assert render_children() == []
    project = settings.data_dir / "previews" / "proj"
    assert leftovers(project) == []
    assert not (project / "job-1").exists()


async def test_event_loop_keeps_running_during_a_render(settings: Settings) -> None:
    ticks_with_child = 0
    ticks = 0
    done = asyncio.Event()

    async def ticker() -> None:
        nonlocal ticks, ticks_with_child
        while not done.is_set():
            await asyncio.sleep(0.005)
            ticks += 1
            if render_children():
                ticks_with_child += 1

    tick_task = asyncio.create_task(ticker())
    steps = [{"title": f"Step {i}", "text": "Some text.", "durationSeconds": 3} for i in range(4)]
    preview = job(steps, ASSETS, resolution="1280x720", fps=24, format="mp4")
    try:
        result = await StoryboardRenderer(settings)(context(preview, settings))
    finally:
        done.set()
        await tick_task
    assert result["rendered"] is True
    # the render ran in another process while this loop kept turning
    assert ticks_with_child >= 20, (ticks_with_child, ticks)


@pytest.mark.parametrize(
    ("mutate", "asset_id"),
    [
        (lambda a: (a / "board.png").write_bytes(b"\x89PNG\r\n\x1a\nbroken" * 20), "board"),
        (lambda a: (a / "voice.wav").write_bytes((a / "voice.wav").read_bytes()[:3000]), "voice"),
        # a cut JPEG passes the up-front probe and fails when its scene is drawn, mid-encode
        (lambda a: (a / "photo.jpg").write_bytes((a / "photo.jpg").read_bytes()[:2000]), "photo"),
    ],
)
async def test_corrupt_assets_fail_the_job_without_output(
    settings: Settings, mutate: Any, asset_id: str
) -> None:
    mutate(settings.assets_dir)
    preview = job(STEPS, ASSETS, {"narration": {"assetId": "voice"}})
    with pytest.raises(PermanentJobError) as info:
        await StoryboardRenderer(settings)(context(preview, settings))
    assert info.value.reason == "asset_corrupt"
    assert repr(asset_id) in info.value.message
    project = settings.data_dir / "previews" / "proj"
    assert not (project / "job-1").exists()
    assert leftovers(project) == []


async def test_escaping_asset_path_fails_permanently(settings: Settings) -> None:
    assets = [{"id": "board", "type": "image", "uri": "../../etc/passwd"}]
    with pytest.raises(PermanentJobError) as info:
        await StoryboardRenderer(settings)(context(job(STEPS[:1], assets), settings))
    assert (info.value.reason, info.value.retryable) == ("asset_forbidden", False)


async def test_http_assets_from_allowed_hosts_only(settings: Settings) -> None:
    body = (settings.assets_dir / "board.png").read_bytes()
    with asset_server() as server:
        server.routes["/board.png"] = (200, body, {})
        server.routes["/gone.png"] = (404, b"", {})
        server.routes["/flaky.png"] = (503, b"", {})
        allowed = Settings(
            data_dir=settings.data_dir, assets_dir=settings.assets_dir, asset_hosts=(server.netloc,)
        )
        renderer = StoryboardRenderer(allowed)

        def remote(path: str) -> list[dict[str, Any]]:
            return [{"id": "board", "type": "image", "uri": server.url(path)}]

        result = await renderer(context(job(STEPS[:1], remote("/board.png")), allowed))
        assert check_manifest(dict(result))["frames"] == 12
        with pytest.raises(PermanentJobError) as missing:
            await renderer(context(job(STEPS[:1], remote("/gone.png")), allowed))
        assert missing.value.reason == "asset_missing"
        with pytest.raises(RetryableJobError) as flaky:
            await renderer(context(job(STEPS[:1], remote("/flaky.png")), allowed))
        assert flaky.value.reason == "asset_unavailable"
        with pytest.raises(PermanentJobError) as refused:
            await StoryboardRenderer(settings)(
                context(job(STEPS[:1], remote("/board.png")), settings)
            )
        assert refused.value.reason == "asset_forbidden"


async def test_bad_options_fail_before_any_process(settings: Settings) -> None:
    with pytest.raises(PermanentJobError) as info:
        await StoryboardRenderer(settings)(
            context(job(STEPS, ASSETS, resolution="9000x720"), settings)
        )
    assert info.value.reason == "invalid_options"
    assert not (settings.data_dir / "previews").exists()


async def test_a_crashing_renderer_is_retryable(settings: Settings) -> None:
    renderer = StoryboardRenderer(settings, python="/bin/false")
    with pytest.raises(RetryableJobError) as info:
        await renderer(context(job(STEPS[:1], ASSETS), settings))
    assert info.value.reason == "render_failed"
    assert leftovers(settings.data_dir / "previews" / "proj") == []


async def test_the_render_process_gets_no_secret(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REDIS_URL", "redis://:hunter2@redis:6379/0")
    dump = tmp_path / "env.txt"
    spy = tmp_path / "spy.sh"
    spy.write_text(f"#!/bin/sh\nenv > {dump}\nexit 1\n")
    spy.chmod(0o755)
    with pytest.raises(RetryableJobError):
        await StoryboardRenderer(settings, python=str(spy))(context(job(STEPS, ASSETS), settings))
    seen = await asyncio.to_thread(dump.read_text)
    assert "PYTHONPATH=" in seen
    assert "hunter2" not in seen


async def test_dry_run_never_renders(settings: Settings) -> None:
    preview = job(STEPS, ASSETS)
    dry = type(preview)(
        **{**{f: getattr(preview, f) for f in preview.__struct_fields__}, "dry_run": True}
    )
    result = await StoryboardRenderer(settings)(context(dry, settings))
    assert result["rendered"] is False
    assert not (settings.data_dir / "previews").exists()


def test_storyboard_is_the_registered_handler() -> None:
    found = {ep.name: ep.value for ep in entry_points(group=GROUP)}
    assert found.get("storyboard") == "app.renderer:StoryboardRenderer"


REPO = str(Path(__file__).resolve().parent.parent)
WORKER_SCRIPT = """
import asyncio, json, sys
from pathlib import Path
from app.renderer import StoryboardRenderer
from app.settings import Settings
from tests.render_helpers import context, job, render_children

async def main() -> None:
    settings = Settings(data_dir=Path(sys.argv[1]), assets_dir=Path(sys.argv[2]))
    steps = [{"title": "Long", "durationSeconds": 60} for _ in range(5)]
    preview = job(steps, resolution="1280x720", fps=24, format="webm", maxDurationSeconds=300)
    task = asyncio.create_task(StoryboardRenderer(settings)(context(preview, settings)))
    while not render_children():
        await asyncio.sleep(0.01)
    print(render_children()[0], flush=True)
    await task

asyncio.run(main())
"""


async def test_render_process_dies_with_a_crashed_worker(
    settings: Settings, tmp_path: Path
) -> None:
    script = tmp_path / "worker.py"
    script.write_text(WORKER_SCRIPT)
    worker = await asyncio.create_subprocess_exec(
        sys.executable,
        str(script),
        str(settings.data_dir),
        str(settings.assets_dir),
        stdout=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": REPO},
    )
    assert worker.stdout is not None
    line = await asyncio.wait_for(worker.stdout.readline(), 60)
    child = int(line)
    worker.kill()  # the worker dies without any chance to clean up
    await worker.wait()
    await wait_for(lambda: pid_gone(child), "the orphaned render process to die")
    project = settings.data_dir / "previews" / "proj"
    assert not (project / "job-1").exists()  # only a hidden staging folder may remain
    assert all(name.startswith(".tmp-job-1-") for name in leftovers(project))
