"""``schemas/preview-job.schema.json`` is generated from the msgspec types and must not drift."""

from __future__ import annotations

import json
from pathlib import Path

from jsonschema import Draft202012Validator

from app.payload import job_schema

ROOT = Path(__file__).resolve().parent.parent
SCHEMA_FILE = ROOT / "schemas" / "preview-job.schema.json"
REGENERATE = (
    "make schema   (= .venv/bin/preview-worker schema > schemas/preview-job.schema.json), or\n"
    '  .venv/bin/python -c "import json,app.payload as p;'
    'print(json.dumps(p.job_schema(),indent=2,ensure_ascii=False))" '
    "> schemas/preview-job.schema.json"
)


def generated() -> str:
    """Exactly what ``preview-worker schema`` prints."""
    return json.dumps(job_schema(), indent=2, ensure_ascii=False) + "\n"


def test_checked_in_schema_equals_the_generated_one() -> None:
    checked_in = SCHEMA_FILE.read_text(encoding="utf-8")
    assert checked_in == generated(), (
        f"{SCHEMA_FILE.relative_to(ROOT)} drifted from app/payload.py; regenerate it with:\n"
        f"  {REGENERATE}"
    )


def test_schema_is_valid_draft_2020_12() -> None:
    schema = json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    Draft202012Validator.check_schema(schema)


def test_schema_top_level_contract() -> None:
    schema = job_schema()
    job = schema["$defs"]["PreviewJob"]
    assert job["additionalProperties"] is False
    assert set(job["required"]) == {"jobId", "projectId", "requestId", "dryRun", "previewRequest"}
    assert set(job["properties"]) == {
        "jobId",
        "projectId",
        "requestId",
        "dryRun",
        "previewRequest",
        "priority",
        "attempts",
        "createdAt",
        "updatedAt",
    }
    request = schema["$defs"]["PreviewRequest"]
    assert set(request["required"]) == {"steps", "assets", "audio"}
    assert request.get("additionalProperties", True) is not False
    for name in ("createdAt", "updatedAt"):
        (timestamp,) = (s for s in job["properties"][name]["anyOf"] if s.get("type") == "string")
        assert timestamp["format"] == "date-time"
