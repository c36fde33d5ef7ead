"""The demo material: generated assets are real media, sample jobs are valid and render."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import av
import pytest
from PIL import Image

from app.payload import decode_job
from app.renderer import StoryboardRenderer
from app.samples import describe, sample_jobs, write_sample_assets
from app.settings import Settings
from tests.render_helpers import context, decode


@pytest.fixture(scope="module")
def assets_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("samples")
    write_sample_assets(folder)
    return folder


def test_sample_assets_are_real_media(assets_dir: Path) -> None:
    formats = {}
    for name in ("board.png", "pieces.jpg", "cards.webp"):
        with Image.open(assets_dir / name) as image:
            image.load()
            formats[name] = image.format
    assert formats == {"board.png": "PNG", "pieces.jpg": "JPEG", "cards.webp": "WEBP"}
    for name, container, codec in (
        ("narration.wav", "wav", "pcm_s16le"),
        ("music.ogg", "ogg", "opus"),
        ("music.mp3", "mp3", "mp3"),
    ):
        with av.open(str(assets_dir / name)) as media:
            assert container in media.format.name.split(",")
            stream = media.streams.audio[0]
            assert stream.codec_context.name.startswith(codec)
            seconds = (
                sum(f.samples for f in media.decode(stream)) / stream.codec_context.sample_rate
            )
            assert seconds > 2


def test_sample_jobs_are_valid_and_cover_the_demo() -> None:
    jobs = [decode_job(json.dumps(j), max_bytes=1 << 20) for j in sample_jobs()]
    assert {j.options.format for j in jobs} == {"mp4", "webm"}
    assert any(j.preview_request.audio.narration is not None for j in jobs)
    assert any(not j.preview_request.steps for j in jobs)  # a title card
    assert len({j.job_id for j in jobs}) == len(jobs)


async def test_sample_jobs_render(assets_dir: Path, tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data", assets_dir=assets_dir)
    renderer = StoryboardRenderer(settings)
    lines = []
    for payload in sample_jobs():
        preview = decode_job(json.dumps(payload), max_bytes=1 << 20)
        result = await renderer(context(preview, settings))
        out = decode(Path(result["video"]["path"]), keep_every=1000)
        assert (out.width, out.height) == (640, 360)
        has_audio = preview.preview_request.audio.narration or preview.preview_request.audio.music
        assert (out.audio_codec is not None) == bool(has_audio)
        manifest = json.loads(await asyncio.to_thread(Path(result["manifest"]["path"]).read_text))
        lines.append(describe(manifest))
    assert lines[0].startswith("demo-quickstart-mp4: mp4 h264/aac 640x360")
