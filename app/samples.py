"""Demo material generated on the spot: board-game images, a narration and a music loop.

Nothing is downloaded. :func:`write_sample_assets` writes PNG, JPEG and WebP images, a WAV
narration (synthesised syllable-like tones), an Ogg/Opus and an MP3 music loop;
:func:`sample_jobs` returns short jobs (640x360) using them by paths relative to the assets
folder: an mp4 with narration and music, a webm with music, and an mp4 title card.
"""

from __future__ import annotations

import math
import wave
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
from PIL import Image, ImageDraw

MUSIC_RATE = 48_000
NARRATION_RATE = 22_050
PIECE_COLOURS = [(214, 69, 65), (52, 152, 219), (46, 204, 113), (241, 196, 15)]

IMAGES = {
    "board.png": "PNG",
    "pieces.jpg": "JPEG",
    "cards.webp": "WEBP",
}
NARRATION = "narration.wav"
MUSIC_OGG = "music.ogg"
MUSIC_MP3 = "music.mp3"


def board_image(size: int = 480) -> Image.Image:
    image = Image.new("RGB", (size, size), (222, 184, 135))
    draw = ImageDraw.Draw(image)
    cell = size // 8
    for row in range(8):
        for col in range(8):
            if (row + col) % 2:
                x, y = col * cell, row * cell
                draw.rectangle((x, y, x + cell - 1, y + cell - 1), fill=(139, 90, 43))
    for i, colour in enumerate(PIECE_COLOURS):
        x, y = (1 + 2 * i) * cell, (2 + i) * cell
        draw.ellipse((x + 6, y + 6, x + cell - 6, y + cell - 6), fill=colour, outline="white")
    return image


def pieces_image(width: int = 640, height: int = 400) -> Image.Image:
    image = Image.new("RGB", (width, height), (34, 49, 63))
    draw = ImageDraw.Draw(image)
    for i, colour in enumerate(PIECE_COLOURS):
        cx = width * (i + 1) // 5
        draw.rounded_rectangle((cx - 40, 120, cx + 40, 300), radius=18, fill=colour)
        draw.ellipse((cx - 32, 60, cx + 32, 124), fill=colour, outline="white", width=3)
    return image


def cards_image(width: int = 600, height: int = 420) -> Image.Image:
    image = Image.new("RGB", (width, height), (20, 90, 60))
    draw = ImageDraw.Draw(image)
    for i in range(5):
        x = 60 + i * 100
        draw.rounded_rectangle(
            (x, 80 + (i % 2) * 20, x + 90, 330 + (i % 2) * 20),
            radius=10,
            fill=(250, 248, 240),
            outline=PIECE_COLOURS[i % 4],
            width=6,
        )
        draw.text((x + 35, 190), str(i + 1), fill=PIECE_COLOURS[i % 4], font_size=36)
    return image


def narration_samples(seconds: float = 5.0, rate: int = NARRATION_RATE) -> np.ndarray[Any, Any]:
    """Speech-like mono audio: syllables of gliding pitch with pauses, as int16."""
    t = np.arange(int(seconds * rate)) / rate
    syllable = 0.22
    index = np.floor(t / syllable)
    phase = (t % syllable) / syllable
    pitch = 140 + 40 * np.sin(index * 1.7) + 25 * phase
    envelope = np.sin(np.pi * phase) ** 2 * (np.mod(index, 5) != 4)
    tone = np.sin(2 * np.pi * np.cumsum(pitch) / rate)
    voice = tone + 0.4 * np.sin(2 * 2 * np.pi * np.cumsum(pitch) / rate)
    pcm: np.ndarray[Any, Any] = (voice * envelope * 0.45 * 32767).astype("<i2")
    return pcm


def music_samples(seconds: float = 4.0, rate: int = MUSIC_RATE) -> np.ndarray[Any, Any]:
    """A stereo arpeggio loop (float32, shape (2, n))."""
    t = np.arange(int(seconds * rate)) / rate
    notes = [261.63, 329.63, 392.0, 523.25]
    step = 0.25
    freq = np.array(notes)[(np.floor(t / step) % len(notes)).astype(int)]
    decay = np.exp(-((t % step) / step) * 3)
    left = np.sin(2 * np.pi * freq * t) * decay * 0.5
    right = np.sin(2 * np.pi * freq * 1.5 * t) * decay * 0.3
    return np.stack([left, right]).astype(np.float32)


def write_wav(path: Path, samples: np.ndarray[Any, Any], rate: int) -> None:
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(samples.tobytes())


def write_encoded_audio(
    path: Path, samples: np.ndarray[Any, Any], rate: int, container: str, codec: str
) -> None:
    """Encode planar float stereo ``samples`` with PyAV (e.g. ogg/libopus, mp3/libmp3lame)."""
    with av.open(str(path), "w", format=container) as out:
        stream = out.add_stream(codec, rate=rate, layout="stereo")
        assert isinstance(stream, av.AudioStream)
        chunk = 4800
        for at in range(0, samples.shape[1], chunk):
            part = np.ascontiguousarray(samples[:, at : at + chunk])
            frame = av.AudioFrame.from_ndarray(part, format="fltp", layout="stereo")
            frame.sample_rate = rate
            frame.pts = at
            frame.time_base = Fraction(1, rate)
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))


def write_sample_assets(assets_dir: Path) -> None:
    """Write the demo's images and audio into ``assets_dir`` (created if needed)."""
    assets_dir.mkdir(parents=True, exist_ok=True)
    board_image().save(assets_dir / "board.png", format="PNG")
    pieces_image().save(assets_dir / "pieces.jpg", format="JPEG", quality=88)
    cards_image().save(assets_dir / "cards.webp", format="WEBP", quality=85)
    write_wav(assets_dir / NARRATION, narration_samples(), NARRATION_RATE)
    music = music_samples()
    write_encoded_audio(assets_dir / MUSIC_OGG, music, MUSIC_RATE, "ogg", "libopus")
    write_encoded_audio(assets_dir / MUSIC_MP3, music, MUSIC_RATE, "mp3", "libmp3lame")


def _assets(*names: tuple[str, str, str]) -> list[dict[str, str]]:
    return [{"id": aid, "type": kind, "uri": uri} for aid, kind, uri in names]


def sample_jobs() -> list[dict[str, Any]]:
    """Demo jobs (valid per ``app.payload``); asset uris are relative to the assets folder."""
    small = {"resolution": "640x360", "fps": 24, "includeCaptions": True}
    return [
        {
            "jobId": "demo-quickstart-mp4",
            "projectId": "demo",
            "requestId": "demo-1",
            "dryRun": False,
            "previewRequest": {
                "title": "Harbour Lords: quick start",
                "steps": [
                    {
                        "title": "The board",
                        "text": "Lay the board out between the players.",
                        "durationSeconds": 1.5,
                        "assetId": "board",
                    },
                    {
                        "title": "Pick a colour",
                        "text": "Each player takes the pieces of one "
                        "colour and places them on the start row.",
                        "durationSeconds": 1.5,
                        "assetId": "pieces",
                    },
                    {
                        "title": "Deal the cards",
                        "text": "Shuffle the deck and deal five cards to each player.",
                        "durationSeconds": 1.5,
                        "assetId": "cards",
                    },
                ],
                "assets": _assets(
                    ("board", "image", "board.png"),
                    ("pieces", "image", "pieces.jpg"),
                    ("cards", "image", "cards.webp"),
                    ("voice", "audio", NARRATION),
                    ("theme", "audio", MUSIC_OGG),
                ),
                "audio": {
                    "narration": {"assetId": "voice"},
                    "music": {"assetId": "theme", "volume": 0.25},
                },
                "options": {**small, "format": "mp4"},
            },
        },
        {
            "jobId": "demo-setup-webm",
            "projectId": "demo",
            "requestId": "demo-2",
            "dryRun": False,
            "previewRequest": {
                "title": "Harbour Lords: setup",
                "steps": [
                    {
                        "title": "Pieces",
                        "text": "Four colours, one per player.",
                        "durationSeconds": 1.5,
                        "assetId": "pieces",
                    },
                    {
                        "title": "Your first turn",
                        "text": "Move one piece, then draw a card.",
                        "durationSeconds": 1.5,
                    },
                ],
                "assets": _assets(
                    ("pieces", "image", "pieces.jpg"),
                    ("theme", "audio", MUSIC_MP3),
                ),
                "audio": {"music": {"assetId": "theme", "volume": 0.5}},
                "options": {**small, "format": "webm"},
            },
        },
        {
            "jobId": "demo-title-card",
            "projectId": "demo",
            "requestId": "demo-3",
            "dryRun": False,
            "previewRequest": {
                "title": "Harbour Lords",
                "description": "A trading game for 2-4 players. Chapter 1: the rules in a minute.",
                "steps": [],
                "assets": [],
                "audio": {},
                "options": {**small, "format": "mp4", "maxDurationSeconds": 2},
            },
        },
    ]


def describe(manifest: dict[str, Any]) -> str:
    """One line about a rendered preview, for the demo's output."""
    audio = manifest.get("audioCodec") or "no audio"
    seconds = float(manifest["durationSeconds"])
    return (
        f"{manifest['jobId']}: {manifest['format']} {manifest['videoCodec']}/{audio} "
        f"{manifest['resolution']} {math.floor(seconds * 100) / 100:g}s"
    )
