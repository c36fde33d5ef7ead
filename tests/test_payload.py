"""The job contract: every fixture goes through the msgspec decoder AND a JSON-Schema validator.

Both must agree on valid/invalid for every fixture; for invalid ones the decoder's error path
must equal the fixture's ``*.expect.json`` and the validator must report an error at or under it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import msgspec
import pytest
from jsonschema import Draft202012Validator, FormatChecker
from jsonschema.exceptions import ValidationError

from app.errors import PayloadError
from app.payload import PreviewJob, decode_job, encode_job

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures" / "jobs"
SCHEMA_FILE = ROOT / "schemas" / "preview-job.schema.json"
MAX_BYTES = 1024 * 1024

# The two payloads of the prototype, verbatim from issue #2: they must stay valid.
PROTOTYPE_DRY_RUN = (
    '{"jobId":"preview-job-0001","projectId":"project-0001","requestId":"req-0001",'
    '"dryRun":true,"previewRequest":{"steps":[],"assets":[],"audio":{}}}'
)
PROTOTYPE_FULL = (
    '{"jobId":"preview-job-0001","projectId":"project-0001","requestId":"req-0001",'
    '"dryRun":false,"priority":"normal","attempts":0,"createdAt":"2025-01-01T00:00:00Z",'
    '"updatedAt":"2025-01-01T00:00:00Z","previewRequest":{"steps":[],"assets":[],"audio":{},'
    '"title":"Catan – setup","description":"…","options":{"resolution":"1280x720",'
    '"format":"webm","includeCaptions":false},"metadata":{"author":"a","tags":["x"]}}}'
)

VALID = sorted(FIXTURES.joinpath("valid").glob("*.json"))
INVALID = sorted(
    p for p in FIXTURES.joinpath("invalid").glob("*.json") if not p.name.endswith(".expect.json")
)


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [k for k, _ in pairs]
    dupes = {k for k in keys if keys.count(k) > 1}
    if dupes:
        raise ValueError(f"duplicate keys {sorted(dupes)}")
    return dict(pairs)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def load_strict(raw: bytes) -> Any:
    """Parse JSON for the JSON-Schema side: no NaN/Infinity, no duplicate keys (the fixtures
    must mean the same document to every parser)."""
    return json.loads(
        raw.decode("utf-8"),
        object_pairs_hook=_no_duplicate_keys,
        parse_constant=_reject_constant,
    )


@pytest.fixture(scope="module")
def validator() -> Draft202012Validator:
    schema = json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))
    return Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)


def _leaf_errors(errors: list[ValidationError]) -> Iterator[ValidationError]:
    for error in errors:
        if error.context:
            yield from _leaf_errors(list(error.context))
        else:
            yield error


def _at_or_under(path: str, prefix: str) -> bool:
    return path == prefix or (path.startswith(prefix) and path[len(prefix)] in ".[")


def _ids(paths: list[Path]) -> list[str]:
    return [p.stem for p in paths]


# --- the corpus itself -------------------------------------------------------------------------


def test_corpus_is_big_enough_and_every_invalid_fixture_has_an_expectation() -> None:
    assert len(VALID) >= 8, VALID
    assert len(INVALID) >= 24, INVALID
    sidecars = {p.name for p in FIXTURES.joinpath("invalid").glob("*.expect.json")}
    assert sidecars == {p.with_suffix(".expect.json").name for p in INVALID}


def test_prototype_payloads_are_in_the_corpus_verbatim() -> None:
    texts = {p.read_text(encoding="utf-8").strip() for p in VALID}
    assert PROTOTYPE_DRY_RUN in texts
    assert PROTOTYPE_FULL in texts


def test_format_checker_really_checks_date_time(validator: Draft202012Validator) -> None:
    # Without rfc3339-validator installed, jsonschema silently accepts any date-time string.
    checker: FormatChecker = Draft202012Validator.FORMAT_CHECKER
    assert "date-time" in checker.checkers
    assert checker.conforms("2025-01-01T00:00:00Z", "date-time")
    assert not checker.conforms("2025-01-01T00:00:00", "date-time")
    assert not checker.conforms("yesterday", "date-time")
    doc = load_strict(PROTOTYPE_DRY_RUN.encode())
    assert validator.is_valid(doc)
    assert not validator.is_valid({**doc, "createdAt": "2025-02-30T00:00:00Z"})


# --- decoder and JSON Schema agree on every fixture ----------------------------------------------


@pytest.mark.parametrize("path", VALID, ids=_ids(VALID))
def test_valid_fixture_passes_both(path: Path, validator: Draft202012Validator) -> None:
    raw = path.read_bytes()
    job = decode_job(raw, max_bytes=MAX_BYTES)
    assert isinstance(job, PreviewJob)
    errors = [f"{e.json_path}: {e.message}" for e in validator.iter_errors(load_strict(raw))]
    assert errors == [], "JSON Schema rejects what the decoder accepts"


@pytest.mark.parametrize("path", INVALID, ids=_ids(INVALID))
def test_invalid_fixture_fails_both_at_the_expected_path(
    path: Path, validator: Draft202012Validator
) -> None:
    raw = path.read_bytes()
    expected = json.loads(path.with_suffix(".expect.json").read_text(encoding="utf-8"))
    with pytest.raises(PayloadError) as caught:
        decode_job(raw, max_bytes=MAX_BYTES)
    assert (caught.value.reason, caught.value.path) == (expected["reason"], expected["path"]), (
        caught.value.message
    )
    assert expected["path"] in caught.value.message

    errors = list(validator.iter_errors(load_strict(raw)))
    assert errors, "the decoder rejects what JSON Schema accepts"
    leaves = [e.json_path for e in _leaf_errors(errors)]
    assert any(_at_or_under(leaf, expected["path"]) for leaf in leaves), (expected, leaves)


# --- round trip and decoder details -------------------------------------------------------------


@pytest.mark.parametrize("path", VALID, ids=_ids(VALID))
def test_round_trip(path: Path, validator: Draft202012Validator) -> None:
    job = decode_job(path.read_bytes(), max_bytes=MAX_BYTES)
    encoded = encode_job(job)
    assert decode_job(encoded, max_bytes=MAX_BYTES) == job
    # Structs that embed PreviewJob (e.g. the renderer's work order) decode it without hooks.
    assert msgspec.json.decode(encoded, type=PreviewJob) == job
    assert validator.is_valid(load_strict(encoded))


def test_prototype_full_decodes_to_the_expected_values() -> None:
    job = decode_job(PROTOTYPE_FULL, max_bytes=MAX_BYTES)
    assert (job.job_id, job.project_id, job.request_id) == (
        "preview-job-0001",
        "project-0001",
        "req-0001",
    )
    assert job.dry_run is False
    assert job.priority == "normal"
    assert job.attempts == 0
    assert job.created_at == datetime.fromisoformat("2025-01-01T00:00:00+00:00")
    assert job.preview_request.title == "Catan – setup"
    assert job.options.resolution == "1280x720"
    assert job.options.format == "webm"
    assert job.options.include_captions is False
    assert job.options.fps == 24  # default
    assert job.preview_request.metadata == {"author": "a", "tags": ["x"]}


def test_defaults_of_the_minimal_payload() -> None:
    job = decode_job(PROTOTYPE_DRY_RUN.encode(), max_bytes=MAX_BYTES)
    assert job.dry_run is True
    assert job.priority == "normal"
    assert job.attempts is None
    assert job.created_at is None
    assert job.options.format == "mp4"


def test_timestamps_are_aware_datetimes() -> None:
    job = decode_job(
        FIXTURES.joinpath("valid", "full-storyboard.json").read_bytes(), max_bytes=MAX_BYTES
    )
    assert type(job.created_at) is datetime
    assert job.created_at.utcoffset() is not None
    assert job.created_at.isoformat() == "2025-01-01T09:30:00.250000+01:00"
    # The encoder emits plain datetimes as RFC 3339 (here without touching encode_job).
    assert b'"createdAt":"2025-01-01T09:30:00.250000+01:00"' in msgspec.json.encode(job)


def test_integer_valued_floats_count_as_integers_like_in_json_schema() -> None:
    job = decode_job(
        FIXTURES.joinpath("valid", "integral-floats.json").read_bytes(), max_bytes=MAX_BYTES
    )
    assert job.attempts == 2
    assert type(job.attempts) is int
    assert job.options.fps == 30
    assert type(job.options.fps) is int
    assert job.options.max_duration_seconds == 100.0


def test_extra_fields_inside_preview_request_are_allowed() -> None:
    doc = load_strict(PROTOTYPE_DRY_RUN.encode())
    doc["previewRequest"]["theme"] = {"dark": True}
    doc["previewRequest"]["steps"] = [{"title": "s", "transition": "fade"}]
    job = decode_job(json.dumps(doc), max_bytes=MAX_BYTES)
    assert job.preview_request.steps[0].title == "s"
    doc["theme"] = "dark"  # ... but not at the top level
    with pytest.raises(PayloadError) as caught:
        decode_job(json.dumps(doc), max_bytes=MAX_BYTES)
    assert caught.value.path == "$"
    assert "theme" in caught.value.message


def test_str_and_bytes_inputs_decode_alike() -> None:
    assert decode_job(PROTOTYPE_FULL, max_bytes=MAX_BYTES) == decode_job(
        PROTOTYPE_FULL.encode(), max_bytes=MAX_BYTES
    )


def test_duplicate_keys_the_last_one_wins_like_in_json_schema_validators() -> None:
    # A JSON-Schema validator sees the parsed document, where the last duplicate wins; the
    # decoder agrees (an invalid earlier occurrence does not matter). Producers should not send
    # duplicate keys at all (RFC 8259).
    body = (
        '"projectId":"p","requestId":"r","dryRun":true,'
        '"previewRequest":{"steps":[],"assets":[],"audio":{}}'
    )
    job = decode_job('{"jobId":"first","jobId":"second",' + body + "}", max_bytes=MAX_BYTES)
    assert job.job_id == "second"
    job = decode_job('{"jobId":"a/b","jobId":"ok",' + body + "}", max_bytes=MAX_BYTES)
    assert job.job_id == "ok"
    with pytest.raises(PayloadError) as caught:
        decode_job('{"jobId":"ok","jobId":"a/b",' + body + "}", max_bytes=MAX_BYTES)
    assert caught.value.path == "$.jobId"


# --- size cap and undecodable input -------------------------------------------------------------


def _padded(size: int) -> bytes:
    """A valid payload of exactly ``size`` bytes (padding inside previewRequest.metadata)."""
    doc = load_strict(PROTOTYPE_DRY_RUN.encode())
    doc["previewRequest"]["metadata"] = {"pad": ""}
    bare = len(json.dumps(doc, separators=(",", ":")).encode())
    doc["previewRequest"]["metadata"]["pad"] = "x" * (size - bare)
    raw = json.dumps(doc, separators=(",", ":")).encode()
    assert len(raw) == size
    return raw


def test_size_cap_at_the_limit_is_accepted_one_byte_more_is_refused() -> None:
    limit = 4096
    assert decode_job(_padded(limit), max_bytes=limit).job_id == "preview-job-0001"
    with pytest.raises(PayloadError) as caught:
        decode_job(_padded(limit + 1), max_bytes=limit)
    assert caught.value.reason == "payload_too_large"
    assert caught.value.path == "$"
    assert str(limit) in caught.value.message


def test_default_cap_refuses_a_payload_over_one_mebibyte() -> None:
    with pytest.raises(PayloadError) as caught:
        decode_job(_padded(MAX_BYTES + 1), max_bytes=MAX_BYTES)
    assert caught.value.reason == "payload_too_large"


def test_size_cap_is_checked_before_decoding() -> None:
    # Oversized garbage (not even UTF-8) is refused for its size, so it was never decoded.
    with pytest.raises(PayloadError) as caught:
        decode_job(b"\xff" * 300, max_bytes=256)
    assert caught.value.reason == "payload_too_large"


def test_size_cap_counts_utf8_bytes_not_characters() -> None:
    text = PROTOTYPE_FULL  # contains multi-byte characters (– and …)
    size = len(text.encode())
    assert size > len(text)
    with pytest.raises(PayloadError) as caught:
        decode_job(text, max_bytes=size - 1)
    assert caught.value.reason == "payload_too_large"
    assert decode_job(text, max_bytes=size).job_id == "preview-job-0001"


@pytest.mark.parametrize(
    "raw",
    [
        PROTOTYPE_DRY_RUN.encode().replace(b"req-0001", b"req-\xff001"),
        b"\xfe\xff" + PROTOTYPE_DRY_RUN.encode("utf-16-be"),
        PROTOTYPE_DRY_RUN.encode("latin-1").replace(b"req-0001", b"r\xe9q-0001"),
    ],
    ids=["invalid-byte", "utf-16", "latin-1"],
)
def test_non_utf8_bytes_are_undecodable(raw: bytes) -> None:
    with pytest.raises(PayloadError) as caught:
        decode_job(raw, max_bytes=MAX_BYTES)
    assert caught.value.reason == "undecodable"
    assert "UTF-8" in caught.value.message


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"{",
        b'{"jobId": "a",}',
        b"{'jobId': 'a'}",
        PROTOTYPE_DRY_RUN.encode() + b" trailing",
        PROTOTYPE_DRY_RUN.encode().replace(b"[]", b"[NaN]", 1),
        PROTOTYPE_DRY_RUN.encode().replace(b'"req-0001"', b'"req\\ud800"'),  # lone surrogate
    ],
    ids=[
        "empty",
        "truncated",
        "trailing-comma",
        "single-quotes",
        "trailing-text",
        "nan",
        "surrogate",
    ],
)
def test_malformed_json_is_undecodable(raw: bytes) -> None:
    with pytest.raises(PayloadError) as caught:
        decode_job(raw, max_bytes=MAX_BYTES)
    assert caught.value.reason == "undecodable"
    assert caught.value.message.startswith("payload is not valid JSON")


def test_numbers_beyond_double_range_are_invalid_at_their_path() -> None:
    raw = PROTOTYPE_DRY_RUN.replace('"steps":[]', '"steps":[{"durationSeconds":1e400}]')
    with pytest.raises(PayloadError) as caught:
        decode_job(raw, max_bytes=MAX_BYTES)
    assert caught.value.reason == "invalid_payload"
    assert caught.value.path == "$.previewRequest.steps[0].durationSeconds"


def test_error_messages_carry_no_traceback_and_name_the_path() -> None:
    with pytest.raises(PayloadError) as caught:
        decode_job(
            FIXTURES.joinpath("invalid", "step-duration-too-long.json").read_bytes(),
            max_bytes=MAX_BYTES,
        )
    message = caught.value.message
    assert "Traceback" not in message
    assert message.endswith("(at $.previewRequest.steps[1].durationSeconds)")
    assert caught.value.__cause__ is None
    assert caught.value.__suppress_context__
