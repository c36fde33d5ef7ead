"""Decoding assets: corrupt, truncated and unsupported files fail with a reason naming the asset."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from app.errors import PermanentJobError
from app.media import decode_audio, load_image, mix, probe_image
from tests.render_helpers import make_image, make_ogg, make_wav

RATE = 48_000


@pytest.mark.parametrize(("fmt", "name"), [("PNG", "a.png"), ("JPEG", "a.jpg"), ("WEBP", "a.webp")])
def test_supported_images_load(tmp_path: Path, fmt: str, name: str) -> None:
    image = load_image("pic", make_image(tmp_path / name, fmt, (64, 48)))
    assert image.size == (64, 48)
    assert image.mode == "RGBA"


def test_corrupt_image_fails_naming_the_asset(tmp_path: Path) -> None:
    path = tmp_path / "bad.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 50)
    with pytest.raises(PermanentJobError) as info:
        load_image("board-art", path)
    assert info.value.reason == "asset_corrupt"
    assert "'board-art'" in info.value.message


def test_truncated_image_fails(tmp_path: Path) -> None:
    path = make_image(tmp_path / "t.png", "PNG", (200, 200))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(PermanentJobError) as info:
        load_image("half", path)
    assert info.value.reason == "asset_corrupt"


def test_probe_checks_without_decoding(tmp_path: Path) -> None:
    probe_image("ok", make_image(tmp_path / "ok.png"))
    path = make_image(tmp_path / "t.png", "PNG", (200, 200))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(PermanentJobError) as info:
        probe_image("half", path)
    assert info.value.reason == "asset_corrupt"
    gif = tmp_path / "a.gif"
    Image.new("RGB", (8, 8)).save(gif, format="GIF")
    with pytest.raises(PermanentJobError) as info:
        probe_image("anim", gif)
    assert info.value.reason == "asset_unsupported"


def test_text_file_is_not_an_image(tmp_path: Path) -> None:
    path = tmp_path / "notes.png"
    path.write_text("just words")
    with pytest.raises(PermanentJobError) as info:
        load_image("notes", path)
    assert info.value.reason == "asset_corrupt"


def test_unsupported_image_format(tmp_path: Path) -> None:
    path = tmp_path / "a.gif"
    Image.new("RGB", (8, 8)).save(path, format="GIF")
    with pytest.raises(PermanentJobError) as info:
        load_image("anim", path)
    assert info.value.reason == "asset_unsupported"
    assert "GIF" in info.value.message


def test_wav_and_ogg_decode_to_stereo_at_rate(tmp_path: Path) -> None:
    wav = decode_audio("voice", make_wav(tmp_path / "v.wav", 1.0), rate=RATE, max_samples=10**7)
    ogg = decode_audio("theme", make_ogg(tmp_path / "m.ogg", 1.0), rate=RATE, max_samples=10**7)
    for samples in (wav, ogg):
        assert samples.shape[0] == 2
        assert samples.dtype == np.float32
        assert abs(samples.shape[1] - RATE) < RATE * 0.05
        assert float(np.abs(samples).max()) > 0.1


def test_decoding_stops_at_max_samples(tmp_path: Path) -> None:
    samples = decode_audio("voice", make_wav(tmp_path / "v.wav", 3.0), rate=RATE, max_samples=1000)
    assert samples.shape == (2, 1000)


def test_truncated_wav_fails_cleanly(tmp_path: Path) -> None:
    path = make_wav(tmp_path / "v.wav", 2.0)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])
    with pytest.raises(PermanentJobError) as info:
        decode_audio("voice", path, rate=RATE, max_samples=10**7)
    assert info.value.reason == "asset_corrupt"
    assert "'voice'" in info.value.message
    assert "truncated WAV" in info.value.message


def test_truncated_ogg_fails_cleanly(tmp_path: Path) -> None:
    path = make_ogg(tmp_path / "m.ogg", 2.0)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(PermanentJobError) as info:
        decode_audio("theme", path, rate=RATE, max_samples=10**7)
    assert info.value.reason == "asset_corrupt"
    assert "truncated Ogg" in info.value.message


def test_garbage_audio_fails_cleanly(tmp_path: Path) -> None:
    path = tmp_path / "noise.mp3"
    path.write_bytes(bytes(range(256)) * 8)
    with pytest.raises(PermanentJobError) as info:
        decode_audio("noise", path, rate=RATE, max_samples=10**7)
    assert info.value.reason in ("asset_corrupt", "asset_unsupported")
    assert "'noise'" in info.value.message


def test_image_given_as_audio_is_refused(tmp_path: Path) -> None:
    path = make_image(tmp_path / "a.png")
    with pytest.raises(PermanentJobError) as info:
        decode_audio("voice", path, rate=RATE, max_samples=10**7)
    assert info.value.reason in ("asset_corrupt", "asset_unsupported")


def test_mix_places_narration_and_loops_music() -> None:
    narration = np.full((2, 100), 0.5, dtype=np.float32)
    music = np.array([[1.0, -1.0], [1.0, -1.0]], dtype=np.float32)
    out = mix(narration, music, 0.25, 300)
    assert out.shape == (2, 300)
    assert out[0, 0] == pytest.approx(0.75)
    assert out[0, 1] == pytest.approx(0.25)
    assert out[0, 200] == pytest.approx(0.25)  # narration over, music keeps looping
    assert out[0, 201] == pytest.approx(-0.25)
    loud = mix(np.full((2, 10), 0.9, dtype=np.float32), np.ones((2, 10), np.float32), 1.0, 10)
    assert float(loud.max()) == pytest.approx(1.0)  # clipped
    silent = mix(None, None, 0.0, 5)
    assert not silent.any()
