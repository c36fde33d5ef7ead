"""The render plan: frame layout, the duration cap, the title card, option and reference checks."""

from __future__ import annotations

from typing import Any

import pytest

from app.errors import PermanentJobError
from app.storyboard import TITLE_CARD_SECONDS, build_plan, parse_resolution
from tests.render_helpers import job

IMG = [{"id": "a", "type": "image", "uri": "a.png"}, {"id": "v", "type": "audio", "uri": "v.wav"}]


def test_frames_follow_cumulative_time_without_drift() -> None:
    steps = [{"durationSeconds": 0.35} for _ in range(10)]
    plan = build_plan(job(steps, fps=10))
    assert plan.total_frames == 35  # 3.5 s at 10 fps, although each step is 3.5 frames
    assert {s.frames for s in plan.scenes} == {3, 4}
    starts = [s.start_frame for s in plan.scenes]
    assert starts == [sum(s.frames for s in plan.scenes[:i]) for i in range(10)]
    assert plan.duration_seconds == pytest.approx(3.5)
    assert not plan.capped


def test_cap_truncates_and_drops_scenes() -> None:
    steps: list[dict[str, Any]] = [
        {"durationSeconds": 4, "assetId": "a"},
        {"durationSeconds": 4},
        {"durationSeconds": 4},
    ]
    plan = build_plan(job(steps, IMG, fps=24, maxDurationSeconds=6))
    assert plan.capped
    assert plan.storyboard_seconds == 12
    assert plan.total_frames == 144
    assert [s.frames for s in plan.scenes] == [96, 48]
    assert [s.count for s in plan.scenes] == [3, 3]
    assert set(plan.assets) == {"a"}  # only what is shown is fetched


def test_default_step_duration_and_default_cap() -> None:
    plan = build_plan(job([{} for _ in range(20)], fps=1))
    assert plan.total_frames == 30  # 20 steps x 3 s, capped at 30 s
    assert plan.capped


def test_empty_storyboard_is_a_title_card() -> None:
    plan = build_plan(job([], fps=10))
    assert len(plan.scenes) == 1
    scene = plan.scenes[0]
    assert scene.title_card
    assert (scene.title, scene.text) == ("Test preview", "A preview rendered by the tests.")
    assert plan.total_frames == round(TITLE_CARD_SECONDS * 10)


def test_tiny_cap_still_yields_one_frame() -> None:
    plan = build_plan(job([{"durationSeconds": 2}], fps=1, maxDurationSeconds=0.1))
    assert plan.total_frames == 1


def test_audio_tracks_and_volume() -> None:
    audio = {"narration": {"assetId": "v"}, "music": {"assetId": "v", "volume": 0.2}}
    plan = build_plan(job([{}], IMG, audio))
    assert plan.has_audio
    assert plan.narration is not None and plan.narration.volume == 1.0
    assert plan.music is not None and plan.music.volume == 0.2
    assert not build_plan(job([{}], IMG)).has_audio


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("8x8", "out of bounds"),
        ("4000x720", "out of bounds"),
        ("1280x2200", "out of bounds"),
        ("1280 by 720", "not WIDTHxHEIGHT"),
    ],
)
def test_resolution_bounds(value: str, message: str) -> None:
    with pytest.raises(PermanentJobError) as info:
        parse_resolution(value)
    assert info.value.reason == "invalid_options"
    assert message in info.value.message
    assert value in info.value.message


def test_odd_resolution_is_refused() -> None:
    with pytest.raises(PermanentJobError, match="even"):
        parse_resolution("321x180")
    assert parse_resolution("3840x2160") == (3840, 2160)


def test_unknown_asset_reference_names_step_and_asset() -> None:
    with pytest.raises(PermanentJobError) as info:
        build_plan(job([{}, {"assetId": "ghost"}], IMG))
    assert info.value.reason == "asset_missing"
    assert "step 2" in info.value.message
    assert "'ghost'" in info.value.message


def test_wrong_asset_type_is_refused() -> None:
    with pytest.raises(PermanentJobError) as info:
        build_plan(job([{"assetId": "v"}], IMG))
    assert info.value.reason == "asset_type_mismatch"
    with pytest.raises(PermanentJobError) as info:
        build_plan(job([{}], IMG, {"narration": {"assetId": "a"}}))
    assert "audio.narration" in info.value.message


def test_duplicate_asset_ids_are_refused() -> None:
    with pytest.raises(PermanentJobError) as info:
        build_plan(job([{}], [*IMG, {"id": "a", "type": "image", "uri": "b.png"}]))
    assert info.value.reason == "invalid_request"
