"""Decoding assets: images with Pillow, audio with PyAV, and the narration/music mix.

A file that is not what the asset says, cannot be decoded, or is cut short fails the job with
:class:`PermanentJobError` (reason ``asset_corrupt`` or ``asset_unsupported``) naming the asset.
Truncation is checked per container because FFmpeg quietly shortens a cut WAV: the RIFF
``data`` chunk must fit in the file, and an Ogg stream must end with a complete end-of-stream
page.
"""

from __future__ import annotations

import struct
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import av
import numpy as np
import numpy.typing as npt
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import PermanentJobError

IMAGE_FORMATS = {"PNG": "PNG", "JPEG": "JPEG", "WEBP": "WebP"}
AUDIO_FORMATS = {"wav": "WAV", "mp3": "MP3", "ogg": "Ogg"}
MAX_IMAGE_PIXELS = 40_000_000
AUDIO_CHANNELS = 2

Samples = npt.NDArray[np.float32]
"""Planar float audio, shape (2, n), at the render's sample rate."""


@contextmanager
def _image_errors(asset_id: str) -> Iterator[None]:
    """Map Pillow's many failure modes to one clear job error naming the asset."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            yield
    except PermanentJobError:
        raise
    except UnidentifiedImageError:
        raise PermanentJobError(
            "asset_corrupt", f"asset {asset_id!r}: not a readable PNG, JPEG or WebP image"
        ) from None
    except (
        OSError,
        SyntaxError,
        ValueError,
        Image.DecompressionBombError,
        Image.DecompressionBombWarning,
    ) as exc:
        raise PermanentJobError(
            "asset_corrupt", f"asset {asset_id!r}: image cannot be decoded ({exc})"
        ) from None


def _open_checked(asset_id: str, path: Path) -> Image.Image:
    image = Image.open(path)
    if image.format not in IMAGE_FORMATS:
        raise PermanentJobError(
            "asset_unsupported",
            f"asset {asset_id!r}: {image.format or 'unknown'} images are not supported "
            "(PNG, JPEG or WebP)",
        )
    if image.width * image.height > MAX_IMAGE_PIXELS:
        raise PermanentJobError(
            "asset_too_large",
            f"asset {asset_id!r}: {image.width}x{image.height} pixels, the limit is "
            f"{MAX_IMAGE_PIXELS}",
        )
    return image


def probe_image(asset_id: str, path: Path) -> None:
    """Cheap up-front check (format, size, structure) without keeping decoded pixels."""
    with _image_errors(asset_id), _open_checked(asset_id, path) as image:
        image.verify()


def load_image(asset_id: str, path: Path) -> Image.Image:
    """Open, fully decode and orient an image asset; return it as RGBA."""
    with _image_errors(asset_id), _open_checked(asset_id, path) as image:
        image.load()
        oriented = ImageOps.exif_transpose(image)
        return oriented.convert("RGBA")


def decode_audio(asset_id: str, path: Path, *, rate: int, max_samples: int) -> Samples:
    """Decode up to ``max_samples`` of an audio asset as planar stereo float at ``rate``."""
    chunks: list[Samples] = []
    got = 0
    check_complete(asset_id, path)
    try:
        with av.open(str(path), "r") as container:
            name = container.format.name
            kind = next((k for k in AUDIO_FORMATS if k in name.split(",")), None)
            if kind is None:
                raise PermanentJobError(
                    "asset_unsupported",
                    f"asset {asset_id!r}: {name} audio is not supported (WAV, MP3 or Ogg)",
                )
            if not container.streams.audio:
                raise PermanentJobError("asset_corrupt", f"asset {asset_id!r}: no audio stream")
            stream = container.streams.audio[0]
            resampler = av.AudioResampler(format="fltp", layout="stereo", rate=rate)
            for frame in container.decode(stream):
                for out in resampler.resample(frame):
                    array = out.to_ndarray().astype(np.float32, copy=False)
                    chunks.append(array)
                    got += array.shape[1]
                if got >= max_samples:
                    break
            else:
                for out in resampler.resample(None):
                    chunks.append(out.to_ndarray().astype(np.float32, copy=False))
    except PermanentJobError:
        raise
    except av.FFmpegError as exc:  # its str() holds the file path: keep only the cause
        raise PermanentJobError(
            "asset_corrupt", f"asset {asset_id!r}: audio cannot be decoded ({exc.strerror})"
        ) from None
    except (OSError, ValueError, EOFError) as exc:
        raise PermanentJobError(
            "asset_corrupt", f"asset {asset_id!r}: audio cannot be decoded ({exc})"
        ) from None
    if not chunks:
        raise PermanentJobError("asset_corrupt", f"asset {asset_id!r}: no audio samples")
    samples = np.concatenate(chunks, axis=1)[:, :max_samples]
    if samples.shape[1] == 0:
        raise PermanentJobError("asset_corrupt", f"asset {asset_id!r}: no audio samples")
    return np.ascontiguousarray(samples)


def check_complete(asset_id: str, path: Path) -> None:
    """Refuse a WAV or Ogg file that was cut short (FFmpeg would decode what is left)."""
    with path.open("rb") as f:
        magic = f.read(4)
    if magic == b"RIFF":
        problem = _wav_problem(path)
    elif magic == b"OggS":
        problem = _ogg_problem(path)
    else:
        problem = None
    if problem:
        raise PermanentJobError("asset_corrupt", f"asset {asset_id!r}: {problem}")


def _wav_problem(path: Path) -> str | None:
    size = path.stat().st_size
    with path.open("rb") as f:
        header = f.read(12)
        if len(header) < 12 or header[:4] not in (b"RIFF", b"RF64") or header[8:12] != b"WAVE":
            return None  # not a plain RIFF/WAVE: leave it to the decoder
        if header[:4] == b"RF64":
            return None
        offset = 12
        while offset + 8 <= size:
            f.seek(offset)
            chunk_id, chunk_size = struct.unpack("<4sI", f.read(8))
            if chunk_id == b"data":
                if chunk_size in (0, 0xFFFFFFFF):  # streamed WAV: size unknown
                    return None
                if offset + 8 + chunk_size > size:
                    have = size - offset - 8
                    return f"truncated WAV: data chunk declares {chunk_size} bytes, {have} present"
                return None
            offset += 8 + chunk_size + (chunk_size & 1)
    return "truncated WAV: no data chunk"


def _ogg_problem(path: Path) -> str | None:
    size = path.stat().st_size
    offset = 0
    last_flags = 0
    with path.open("rb") as f:
        while offset < size:
            f.seek(offset)
            head = f.read(27)
            if len(head) < 27 or head[:4] != b"OggS":
                return f"truncated or damaged Ogg: no page at byte {offset}"
            lacing = f.read(head[26])
            if len(lacing) < head[26]:
                return "truncated Ogg: the last page is cut"
            offset += 27 + head[26] + sum(lacing)
            last_flags = head[5]
    if offset > size:
        return "truncated Ogg: the last page is cut"
    if not last_flags & 0x04:
        return "truncated Ogg: the stream has no end-of-stream page"
    return None


def mix(
    narration: Samples | None, music: Samples | None, music_volume: float, total: int
) -> Samples:
    """Narration from the start (silence after it ends), music looped under it; clipped."""
    out = np.zeros((AUDIO_CHANNELS, total), dtype=np.float32)
    if narration is not None:
        n = min(total, narration.shape[1])
        out[:, :n] += narration[:, :n]
    if music is not None and music_volume > 0:
        reps = -(-total // music.shape[1])
        looped = np.tile(music, (1, reps))[:, :total]
        out += looped * np.float32(music_volume)
    np.clip(out, -1.0, 1.0, out=out)
    return out
