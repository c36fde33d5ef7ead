"""``preview-worker validate FILE…``: exit 0 all valid, 2 any invalid, 3 a file cannot be read.

Each error is printed as ``FILE: PATH: …message…`` (the JSON path as the decoder reports it).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from app.cli import main
from tests.conftest import require_tool

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures" / "jobs"
VALID = sorted(FIXTURES.joinpath("valid").glob("*.json"))
INVALID = sorted(
    p for p in FIXTURES.joinpath("invalid").glob("*.json") if not p.name.endswith(".expect.json")
)
PROTOTYPE = FIXTURES / "valid" / "prototype-dry-run.json"


def expected_path(fixture: Path) -> str:
    path: str = json.loads(fixture.with_suffix(".expect.json").read_text(encoding="utf-8"))["path"]
    return path


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("PREVIEW_") or name == "REDIS_URL":
            monkeypatch.delenv(name)


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["validate", *args])
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return code, out, err


def test_all_valid_fixtures_exit_0(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, *map(str, VALID))
    assert code == 0, out
    for path in VALID:
        assert f"{path}: valid" in out.splitlines()


def test_every_invalid_fixture_is_reported_with_its_json_path(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, _ = run(capsys, *map(str, INVALID))
    assert code == 2
    lines = out.splitlines()
    for path in INVALID:
        prefix = f"{path}: {expected_path(path)}: "
        assert any(line.startswith(prefix) for line in lines), (prefix, out)
    assert not any(line.endswith(": valid") for line in lines)


def test_one_invalid_file_among_valid_ones_exits_2(
    capsys: pytest.CaptureFixture[str],
) -> None:
    bad = FIXTURES / "invalid" / "step-duration-too-long.json"
    code, out, _ = run(capsys, str(PROTOTYPE), str(bad))
    assert code == 2
    assert f"{PROTOTYPE}: valid" in out
    assert f"{bad}: $.previewRequest.steps[1].durationSeconds: " in out


def test_quiet_prints_errors_only(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "-q", str(PROTOTYPE))
    assert (code, out) == (0, "")
    bad = FIXTURES / "invalid" / "jobId-slash.json"
    code, out, _ = run(capsys, "--quiet", str(PROTOTYPE), str(bad))
    assert code == 2
    assert out.splitlines() == [line for line in out.splitlines() if line.startswith(f"{bad}: ")]
    assert out.startswith(f"{bad}: $.jobId: ")


def test_unreadable_file_exits_3_and_names_the_file(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    missing = tmp_path / "missing.json"
    code, out, err = run(capsys, str(missing))
    assert code == 3
    assert str(missing) in out + err


def test_directory_is_unreadable(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, out, err = run(capsys, str(tmp_path))
    assert code == 3
    assert str(tmp_path) in out + err


def test_unreadable_wins_over_invalid(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    bad = FIXTURES / "invalid" / "missing-jobId.json"
    code, out, _ = run(capsys, str(bad), str(tmp_path / "missing.json"), str(PROTOTYPE))
    assert code == 3
    assert f"{bad}: $: " in out
    assert f"{PROTOTYPE}: valid" in out  # later files are still checked


def test_oversized_payload_is_invalid_with_its_reason(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PREVIEW_MAX_PAYLOAD_BYTES", "256")
    doc = json.loads(PROTOTYPE.read_text(encoding="utf-8"))
    doc["previewRequest"]["description"] = "x" * 300
    big = tmp_path / "big.json"
    big.write_text(json.dumps(doc), encoding="utf-8")
    code, out, _ = run(capsys, str(big))
    assert code == 2
    assert out.startswith(f"{big}: $: ")
    assert "payload_too_large" in out


def test_non_utf8_file_is_invalid_not_unreadable(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    latin1 = tmp_path / "latin1.json"
    latin1.write_bytes(PROTOTYPE.read_bytes().replace(b"req-0001", b"r\xe9q-0001"))
    code, out, _ = run(capsys, str(latin1))
    assert code == 2
    assert "undecodable" in out


def test_malformed_json_is_invalid(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    broken = tmp_path / "broken.json"
    broken.write_text('{"jobId": "a", ', encoding="utf-8")
    code, out, _ = run(capsys, str(broken))
    assert code == 2
    assert f"{broken}: $: " in out
    assert "undecodable" in out


def test_json_lines_report_the_line_number(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    good = PROTOTYPE.read_text(encoding="utf-8").strip()
    bad = good.replace('"dryRun":true', '"dryRun":"yes"')
    lines = tmp_path / "jobs.jsonl"
    lines.write_text(f"{good}\n{good}\n{bad}\n", encoding="utf-8")
    code, out, _ = run(capsys, str(lines))
    assert code == 2
    assert f"{lines}:3: $.dryRun: " in out
    assert f"{lines}:1: valid" in out


def test_no_file_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        main(["validate"])
    assert caught.value.code == 2
    assert "Traceback" not in capsys.readouterr().err


def test_console_script_exit_codes(tmp_path: Path) -> None:
    script = Path(sys.executable).parent / "preview-worker"
    require_tool(script.exists(), "the preview-worker console script (pip install -e .)")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREVIEW_")}
    bad = FIXTURES / "invalid" / "createdAt-without-offset.json"
    cases = [([PROTOTYPE], 0), ([PROTOTYPE, bad], 2), ([tmp_path / "missing.json"], 3)]
    for files, want in cases:
        done = subprocess.run(
            [str(script), "validate", *map(str, files)],
            capture_output=True,
            text=True,
            env=env,
            cwd=ROOT,
            check=False,
            timeout=60,
        )
        assert done.returncode == want, (files, done.stdout, done.stderr)
        assert "Traceback" not in done.stdout + done.stderr
        if bad in files:
            assert f"{bad}: $.createdAt: " in done.stdout
