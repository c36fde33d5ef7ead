"""Encoding and muxing with PyAV: mp4 = H.264 + AAC, webm = VP9 + Opus.

Each scene's still is converted to YUV once and sent to the encoder once per frame; the audio
of a scene's time span is encoded right after its frames so the muxer interleaves as it goes
and nothing accumulates in memory.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from PIL import Image

from .media import Samples

AUDIO_CHUNK = 4800


@dataclass(frozen=True, kw_only=True)
class Format:
    name: str
    container: str
    muxer_options: dict[str, str]
    video_codec: str
    video_options: dict[str, str]
    audio_codec: str
    audio_options: dict[str, str]
    audio_bit_rate: int

    @property
    def video_label(self) -> str:
        return "h264" if self.video_codec == "libx264" else "vp9"

    @property
    def audio_label(self) -> str:
        return "aac" if self.audio_codec == "aac" else "opus"


FORMATS: dict[str, Format] = {
    "mp4": Format(
        name="mp4",
        container="mp4",
        muxer_options={"movflags": "+faststart"},
        video_codec="libx264",
        video_options={"preset": "veryfast", "crf": "23"},
        audio_codec="aac",
        audio_options={"aac_coder": "fast"},  # ~2x faster than the default, fine for previews
        audio_bit_rate=128_000,
    ),
    "webm": Format(
        name="webm",
        container="webm",
        muxer_options={},
        video_codec="libvpx-vp9",
        video_options={
            "deadline": "realtime",
            "cpu-used": "8",
            "row-mt": "1",
            "crf": "33",
            "b": "0",
        },
        audio_codec="libopus",
        audio_options={},
        audio_bit_rate=96_000,
    ),
}


def encode(
    path: Path,
    fmt: Format,
    *,
    width: int,
    height: int,
    fps: int,
    scenes: Iterable[tuple[Image.Image, int]],
    audio: Samples | None,
    audio_rate: int,
) -> int:
    """Write the video; ``scenes`` yields (still, frame count). Returns the frames written."""
    with av.open(str(path), "w", format=fmt.container, options=fmt.muxer_options) as out:
        video = out.add_stream(fmt.video_codec, rate=fps, options=fmt.video_options)
        assert isinstance(video, av.VideoStream)
        video.width = width
        video.height = height
        video.pix_fmt = "yuv420p"
        video.codec_context.gop_size = 2 * fps
        sound: av.AudioStream | None = None
        if audio is not None:
            added = out.add_stream(
                fmt.audio_codec, rate=audio_rate, layout="stereo", options=fmt.audio_options
            )
            assert isinstance(added, av.AudioStream)
            added.bit_rate = fmt.audio_bit_rate
            sound = added
        time_base = Fraction(1, fps)
        index = 0
        audio_at = 0
        for still, count in scenes:
            rgb = av.VideoFrame.from_image(still.convert("RGB"))  # type: ignore[no-untyped-call]
            frame = rgb.reformat(format="yuv420p")
            frame.time_base = time_base
            for _ in range(count):
                frame.pts = index
                out.mux(video.encode(frame))
                index += 1
            if sound is not None and audio is not None:
                until = min(audio.shape[1], index * audio_rate // fps)
                audio_at = _encode_audio(out, sound, audio, audio_at, until, audio_rate)
        out.mux(video.encode(None))
        if sound is not None and audio is not None:
            _encode_audio(out, sound, audio, audio_at, audio.shape[1], audio_rate)
            out.mux(sound.encode(None))
    return index


def _encode_audio(
    out: av.container.OutputContainer,
    stream: av.audio.stream.AudioStream,
    audio: Samples,
    start: int,
    end: int,
    rate: int,
) -> int:
    at = start
    while at < end:
        stop = min(end, at + AUDIO_CHUNK)
        chunk = np.ascontiguousarray(audio[:, at:stop])
        frame = av.AudioFrame.from_ndarray(chunk, format="fltp", layout="stereo")
        frame.sample_rate = rate
        frame.pts = at
        frame.time_base = Fraction(1, rate)
        out.mux(stream.encode(frame))
        at = stop
    return at
