"""docs/plugins.md: the example plugin is extracted, loaded and run as the worker would."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import re
import tomllib
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from app.errors import PermanentJobError
from app.handlers import GROUP, JobContext
from app.payload import decode_job
from app.settings import Settings

DOC = Path(__file__).resolve().parent.parent / "docs" / "plugins.md"


def example(name: str) -> str:
    text = DOC.read_text()
    match = re.search(rf"<!-- example: {re.escape(name)} -->\n```\w+\n(.*?)```", text, re.S)
    assert match, f"docs/plugins.md has no example named {name}"
    return match.group(1)


@pytest.fixture
def plugin(tmp_path: Path) -> ModuleType:
    path = tmp_path / "outline_plugin.py"
    path.write_text(example("outline_plugin.py"))
    spec = importlib.util.spec_from_file_location("outline_plugin", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def make_job(steps: list[dict[str, Any]], job_id: str = "outline-1") -> Any:
    payload = {
        "jobId": job_id,
        "projectId": "games",
        "requestId": "r1",
        "dryRun": False,
        "previewRequest": {
            "title": "Chess",
            "steps": steps,
            "assets": [],
            "audio": {},
            "options": {"renderer": "outline"},
        },
    }
    return decode_job(json.dumps(payload), max_bytes=1 << 20)


async def test_example_plugin_runs_as_documented(plugin: ModuleType, tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data")
    handler = plugin.OutlineHandler(settings)
    steps = [
        {"title": "Set up", "text": "White on the right.", "durationSeconds": 2},
        {"title": "Move", "durationSeconds": 4.5},
    ]
    ctx = JobContext(job=make_job(steps), attempt=1, settings=settings, worker_id="w")
    result = dict(await handler(ctx))
    assert result["relativePath"] == "outlines/games/outline-1.md"
    assert result["steps"] == 2
    written = await asyncio.to_thread((settings.data_dir / result["relativePath"]).read_text)
    assert (
        written == "# Chess\n\n1. **Set up** (2 s)\n   White on the right.\n2. **Move** (4.5 s)\n"
    )
    assert json.loads(json.dumps(result)) == result  # JSON-able, as the contract says

    again = dict(
        await handler(
            JobContext(job=make_job(steps[:1]), attempt=2, settings=settings, worker_id="w")
        )
    )
    rerun = await asyncio.to_thread(Path(again["path"]).read_text)
    assert rerun.count("**") == 2  # the re-run replaced the file
    leftovers = await asyncio.to_thread(lambda: list(Path(again["path"]).parent.glob(".*")))
    assert leftovers == []


async def test_example_plugin_refuses_empty_storyboards(plugin: ModuleType, tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    ctx = JobContext(job=make_job([]), attempt=1, settings=settings, worker_id="w")
    with pytest.raises(PermanentJobError) as info:
        await plugin.OutlineHandler(settings)(ctx)
    assert info.value.reason == "empty_storyboard"


def test_example_entry_point_matches_the_code(plugin: ModuleType) -> None:
    config = tomllib.loads(example("pyproject.toml"))
    points = config["project"]["entry-points"][GROUP]
    module, _, attr = points["outline"].partition(":")
    assert module == plugin.__name__
    assert callable(getattr(plugin, attr))
