"""The render plan: what a preview job's storyboard becomes, before any file is touched.

Pure and cheap: the handler builds it in the worker to reject a bad request at once, and the
render process builds it again to drive the render. Frame boundaries are computed from the
cumulative storyboard time, so rounding never drifts: the video lasts ``total_frames / fps``,
within one frame of ``min(sum of step durations, maxDurationSeconds)``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .errors import PermanentJobError
from .payload import Asset, Options, PreviewJob

MIN_WIDTH, MAX_WIDTH = 16, 3840
MIN_HEIGHT, MAX_HEIGHT = 16, 2160
TITLE_CARD_SECONDS = 3.0
AUDIO_RATE = 48_000

_RESOLUTION = re.compile(r"^([0-9]+)x([0-9]+)$")


@dataclass(frozen=True, kw_only=True)
class Scene:
    index: int
    """0-based position in the storyboard (the title card is scene 0 of an empty one)."""
    count: int
    """Number of scenes shown."""
    title: str | None
    text: str | None
    asset_id: str | None
    start_frame: int
    frames: int
    title_card: bool = False


@dataclass(frozen=True, kw_only=True)
class AudioTrack:
    asset_id: str
    volume: float


@dataclass(frozen=True, kw_only=True)
class Plan:
    job_id: str
    project_id: str
    request_id: str
    title: str | None
    description: str | None
    width: int
    height: int
    fps: int
    format: str
    captions: bool
    scenes: tuple[Scene, ...]
    total_frames: int
    storyboard_seconds: float
    capped: bool
    narration: AudioTrack | None
    music: AudioTrack | None
    assets: dict[str, Asset]
    """Assets the shown scenes and the audio need, by id (nothing else is fetched)."""

    @property
    def duration_seconds(self) -> float:
        return self.total_frames / self.fps

    @property
    def has_audio(self) -> bool:
        return self.narration is not None or self.music is not None

    @property
    def resolution(self) -> str:
        return f"{self.width}x{self.height}"


def parse_resolution(value: str) -> tuple[int, int]:
    match = _RESOLUTION.match(value)
    if not match:
        raise PermanentJobError(
            "invalid_options", f"options.resolution {value!r} is not WIDTHxHEIGHT"
        )
    width, height = int(match.group(1)), int(match.group(2))
    if not (MIN_WIDTH <= width <= MAX_WIDTH and MIN_HEIGHT <= height <= MAX_HEIGHT):
        raise PermanentJobError(
            "invalid_options",
            f"options.resolution {value!r} is out of bounds "
            f"({MIN_WIDTH}..{MAX_WIDTH} x {MIN_HEIGHT}..{MAX_HEIGHT})",
        )
    if width % 2 or height % 2:
        raise PermanentJobError(
            "invalid_options", f"options.resolution {value!r} must have even dimensions"
        )
    return width, height


def _asset_table(job: PreviewJob) -> dict[str, Asset]:
    table: dict[str, Asset] = {}
    for asset in job.preview_request.assets:
        if asset.id in table:
            raise PermanentJobError(
                "invalid_request", f"asset id {asset.id!r} appears more than once in assets"
            )
        table[asset.id] = asset
    return table


def _referenced(table: dict[str, Asset], asset_id: str, kind: str, where: str) -> Asset:
    asset = table.get(asset_id)
    if asset is None:
        raise PermanentJobError(
            "asset_missing", f"{where} references asset {asset_id!r}, which is not in assets"
        )
    if asset.type != kind:
        raise PermanentJobError(
            "asset_type_mismatch",
            f"{where} needs an {kind} but asset {asset_id!r} has type {asset.type!r}",
        )
    return asset


def build_plan(job: PreviewJob) -> Plan:
    """Validate the request's references and options and lay the scenes out on frames.

    Raises :class:`PermanentJobError` naming the offending option or asset.
    """
    request = job.preview_request
    options: Options = job.options
    width, height = parse_resolution(options.resolution)
    fps = options.fps
    table = _asset_table(job)
    for i, step in enumerate(request.steps):
        if step.asset_id is not None:
            _referenced(table, step.asset_id, "image", f"step {i + 1}")
    narration = music = None
    if request.audio.narration is not None:
        asset = _referenced(table, request.audio.narration.asset_id, "audio", "audio.narration")
        narration = AudioTrack(asset_id=asset.id, volume=1.0)
    if request.audio.music is not None:
        asset = _referenced(table, request.audio.music.asset_id, "audio", "audio.music")
        music = AudioTrack(asset_id=asset.id, volume=request.audio.music.volume)

    cap = options.max_duration_seconds
    scenes: list[Scene] = []
    if not request.steps:
        seconds = TITLE_CARD_SECONDS
        total = max(1, round(min(seconds, cap) * fps))
        scenes.append(
            Scene(
                index=0,
                count=1,
                title=request.title,
                text=request.description,
                asset_id=None,
                start_frame=0,
                frames=total,
                title_card=True,
            )
        )
    else:
        seconds = sum(step.duration_seconds for step in request.steps)
        elapsed = 0.0
        boundary = 0
        shown = []
        for step in request.steps:
            elapsed += step.duration_seconds
            end = round(min(elapsed, cap) * fps)
            if end > boundary:
                shown.append((step, boundary, end - boundary))
                boundary = end
        if not shown:  # a cap shorter than half a frame still yields one frame
            shown.append((request.steps[0], 0, 1))
            boundary = 1
        total = boundary
        for i, (step, start, frames) in enumerate(shown):
            scenes.append(
                Scene(
                    index=i,
                    count=len(request.steps),
                    title=step.title,
                    text=step.text,
                    asset_id=step.asset_id,
                    start_frame=start,
                    frames=frames,
                )
            )
    needed = {s.asset_id for s in scenes if s.asset_id is not None}
    needed |= {t.asset_id for t in (narration, music) if t is not None}
    return Plan(
        job_id=job.job_id,
        project_id=job.project_id,
        request_id=job.request_id,
        title=request.title,
        description=request.description,
        width=width,
        height=height,
        fps=fps,
        format=options.format,
        captions=options.include_captions,
        scenes=tuple(scenes),
        total_frames=total,
        storyboard_seconds=seconds,
        capped=seconds > cap,
        narration=narration,
        music=music,
        assets={k: v for k, v in table.items() if k in needed},
    )
