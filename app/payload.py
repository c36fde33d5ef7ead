"""The job contract: msgspec Structs are the source of truth for the wire format.

``schemas/preview-job.schema.json`` is generated from :class:`PreviewJob` (``preview-worker
schema``) and a test keeps the checked-in file equal to it.
"""

from __future__ import annotations

import math
import re
from datetime import datetime
from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta

from .errors import PayloadError

# Patterns end with ``$(?!\n)``: a bare ``$`` also matches before a trailing newline in Python's
# ``re`` (msgspec and jsonschema both use it), which would let "job-1\n" through.
ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]*$(?!\n)"
Id = Annotated[
    str,
    Meta(
        min_length=1,
        max_length=128,
        pattern=ID_PATTERN,
        description="1-128 of A-Z a-z 0-9 . _ -, starting with a letter or digit "
        "(used in Redis keys and file paths).",
    ),
]
# msgspec's datetime parser also takes "2025-01-01 00:00:00Z" and "+0100" offsets, which JSON
# Schema's date-time format refuses: decode_job checks the raw strings against RFC 3339 too.
_RFC3339 = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]+)?"
    r"(?:[Zz]|[+-][0-9]{2}:[0-9]{2})"
)


Timestamp = Annotated[datetime, Meta(tz=True, description="RFC 3339 date-time with offset.")]
Priority = Literal["low", "normal", "high"]
Text = Annotated[str, Meta(max_length=2000)]
ShortText = Annotated[str, Meta(max_length=200)]
Resolution = Annotated[
    str,
    Meta(
        pattern=r"^[1-9][0-9]{0,2}[02468]x[1-9][0-9]{0,2}[02468]$(?!\n)",
        description="WIDTHxHEIGHT with even dimensions, e.g. 1280x720 (the renderer bounds "
        "them to 16..3840 x 16..2160).",
    ),
]


class Step(msgspec.Struct, frozen=True, rename="camel", omit_defaults=True):
    """One scene of the storyboard. Extra fields are allowed and ignored."""

    title: ShortText | None = None
    text: Text | None = None
    duration_seconds: Annotated[float, Meta(gt=0, le=60)] = 3.0
    asset_id: Id | None = None


class Asset(msgspec.Struct, frozen=True, rename="camel", omit_defaults=True):
    """An image (PNG, JPEG, WebP) or audio file (WAV, MP3, OGG/Opus)."""

    id: Id
    type: Literal["image", "audio"]
    uri: Annotated[str, Meta(min_length=1, max_length=2048)]


class Narration(msgspec.Struct, frozen=True, rename="camel", omit_defaults=True):
    asset_id: Id


class Music(msgspec.Struct, frozen=True, rename="camel", omit_defaults=True):
    asset_id: Id
    volume: Annotated[float, Meta(ge=0, le=1)] = 0.3


class Audio(msgspec.Struct, frozen=True, rename="camel", omit_defaults=True):
    """Optional narration and background music; both present means they are mixed."""

    narration: Narration | None = None
    music: Music | None = None


class Options(msgspec.Struct, frozen=True, rename="camel", omit_defaults=True):
    resolution: Resolution = "1280x720"
    format: Literal["mp4", "webm"] = "mp4"
    fps: Annotated[int, Meta(ge=1, le=60)] = 24
    include_captions: bool = True
    max_duration_seconds: Annotated[float, Meta(gt=0, le=300)] = 30.0
    renderer: (
        Annotated[str, Meta(min_length=1, max_length=64, pattern=r"^[a-z0-9_.-]+$(?!\n)")] | None
    ) = None


class PreviewRequest(msgspec.Struct, frozen=True, rename="camel", omit_defaults=True):
    """What to render. Fields not listed here are allowed and kept in the payload."""

    steps: Annotated[list[Step], Meta(max_length=500)]
    assets: Annotated[list[Asset], Meta(max_length=500)]
    audio: Audio
    title: ShortText | None = None
    description: Text | None = None
    options: Options | None = None
    metadata: dict[str, Any] | None = None


class PreviewJob(
    msgspec.Struct, frozen=True, rename="camel", omit_defaults=True, forbid_unknown_fields=True
):
    """A preview job as producers enqueue it. Unknown top-level fields are rejected."""

    job_id: Id
    project_id: Id
    request_id: Id
    dry_run: bool
    preview_request: PreviewRequest
    priority: Priority = "normal"
    attempts: Annotated[int, Meta(ge=0)] | None = None
    created_at: Timestamp | None = None
    updated_at: Timestamp | None = None

    @property
    def options(self) -> Options:
        return self.preview_request.options or Options()


class _Timestamps(msgspec.Struct, rename="camel"):
    created_at: Any = None
    updated_at: Any = None


_timestamps_decoder = msgspec.json.Decoder(_Timestamps)


def _check_timestamps(data: bytes) -> None:
    stamps = _timestamps_decoder.decode(data)
    for name, value in (("createdAt", stamps.created_at), ("updatedAt", stamps.updated_at)):
        if isinstance(value, str) and not _RFC3339.fullmatch(value):
            path = f"$.{name}"
            raise PayloadError(
                "invalid_payload",
                "Invalid RFC 3339 date-time: expected YYYY-MM-DDTHH:MM:SS[.fraction] followed by "
                f"Z or an offset +HH:MM (at {path})",
                path,
            )


def _integral_float(literal: str) -> float | int:
    """JSON Schema counts 1.0 as an integer; the fallback decoder turns it into one."""
    value = float(literal)
    if not math.isfinite(value):
        raise ValueError("Number out of range")
    return int(value) if value.is_integer() else value


_decoder = msgspec.json.Decoder(PreviewJob)
_untyped_decoder = msgspec.json.Decoder(float_hook=_integral_float)
_encoder = msgspec.json.Encoder()
_AT = re.compile(r" - at `(\$[^`]*)`$")


def decode_job(raw: bytes | str, *, max_bytes: int) -> PreviewJob:
    """Decode and validate one payload; raise :class:`PayloadError` with reason and path.

    The size cap is checked on the raw bytes before any decoding.
    """
    data = raw.encode() if isinstance(raw, str) else raw
    if len(data) > max_bytes:
        raise PayloadError(
            "payload_too_large", f"payload is {len(data)} bytes, the limit is {max_bytes}"
        )
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PayloadError(
            "undecodable", f"payload is not UTF-8: {exc.reason} at byte {exc.start}"
        ) from None
    try:
        job = _decoder.decode(data)
    except msgspec.ValidationError as exc:
        job = _decode_again(data, exc)
    except msgspec.DecodeError as exc:
        raise PayloadError("undecodable", f"payload is not valid JSON: {exc}") from None
    if job.created_at is not None or job.updated_at is not None:
        _check_timestamps(data)
    return job


def _decode_again(data: bytes, error: msgspec.ValidationError) -> PreviewJob:
    """Second pass, where integer-valued floats (1.0, 1e2) count as integers, as in JSON Schema.

    Raises :class:`PayloadError` with the path of the first problem.
    """
    try:
        loose = _untyped_decoder.decode(data)
    except msgspec.DecodeError:
        pass  # a number out of range: the typed pass's error names its path
    else:
        try:
            return msgspec.convert(loose, PreviewJob)
        except msgspec.ValidationError as exc:
            error = exc
    message = str(error)
    match = _AT.search(message)
    path = match.group(1) if match else "$"
    text = _AT.sub("", message)
    raise PayloadError("invalid_payload", f"{text} (at {path})", path) from None


def encode_job(job: PreviewJob) -> bytes:
    return _encoder.encode(job)


def job_schema() -> dict[str, Any]:
    """The JSON Schema (2020-12) of :class:`PreviewJob`, as checked in under ``schemas/``."""
    body = msgspec.json.schema(PreviewJob)
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://preview-worker.dev/schemas/preview-job.schema.json",
        "title": "preview-worker job",
        **body,
    }
