"""The alert rule file: promtool check + unit tests, the threshold contract, real metric names."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from app.metrics import STATES, Metrics
from tests.conftest import require_tool

ROOT = Path(__file__).resolve().parent.parent
RULES = ROOT / "charts" / "preview-worker" / "files" / "prometheus-rules.yaml"
PROMTOOL_TESTS = sorted((ROOT / "tests" / "promtool").glob("*.yaml"))
DOC = ROOT / "docs" / "metrics.md"
THRESHOLDS = {
    "failure_ratio": 0.1,
    "backlog": 1000,
    "p95_duration_seconds": 120,
    "canary_failure_ratio_delta": 0.05,
}


def promtool() -> str:
    found = shutil.which("promtool")
    require_tool(found is not None, "promtool (Debian package prometheus)")
    assert found is not None
    return found


def load(path: Path) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text())
    assert isinstance(data, dict)
    return data


def groups() -> list[dict[str, Any]]:
    result = load(RULES)["groups"]
    assert isinstance(result, list)
    return result


def alerts() -> list[dict[str, Any]]:
    return [rule for group in groups() for rule in group["rules"] if "alert" in rule]


def run(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=120, check=False)


def test_promtool_check_rules() -> None:
    result = run(promtool(), "check", "rules", str(RULES))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


@pytest.mark.parametrize("test_file", PROMTOOL_TESTS, ids=lambda p: p.stem)
def test_promtool_unit_tests(test_file: Path) -> None:
    result = run(promtool(), "test", "rules", test_file.name, cwd=test_file.parent)
    assert result.returncode == 0, result.stdout + result.stderr


def test_there_are_promtool_tests() -> None:
    assert len(PROMTOOL_TESTS) >= 6


def test_every_alert_is_tested_firing_and_not_firing() -> None:
    firing: set[str] = set()
    silent: set[str] = set()
    for path in PROMTOOL_TESTS:
        data = load(path)
        assert data["rule_files"] == ["../../charts/preview-worker/files/prometheus-rules.yaml"]
        for case in data["tests"]:
            for check in case.get("alert_rule_test", []):
                (firing if check.get("exp_alerts") else silent).add(check["alertname"])
    names = {rule["alert"] for rule in alerts()}
    assert names == {
        "PreviewJobsFailureRatioHigh",
        "PreviewQueueBacklogHigh",
        "PreviewJobDurationP95High",
        "PreviewDeadLetterGrowing",
        "PreviewBacklogWithoutConsumer",
        "PreviewCanaryFailureRatioAboveStable",
    }
    assert names - firing == set(), "alerts without a firing test"
    assert names - silent == set(), "alerts without a not-firing test"


def test_every_recording_rule_is_checked_by_an_expression_test() -> None:
    checked = " ".join(
        check["expr"]
        for path in PROMTOOL_TESTS
        for case in load(path)["tests"]
        for check in case.get("promql_expr_test", [])
    )
    records = {r["record"] for g in groups() for r in g["rules"] if "record" in r}
    assert records
    missing = {r for r in records if not re.search(rf"{re.escape(r)}(?![\w:])", checked)}
    assert missing == set(), "recording rules without a promql_expr_test"


def test_threshold_group_follows_the_chart_contract() -> None:
    first = groups()[0]
    assert first["name"] == "preview-worker.thresholds"
    assert [g["name"] for g in groups()].count("preview-worker.thresholds") == 1
    records = {r["record"]: r["expr"] for r in first["rules"]}
    assert records == {
        f"preview_worker:threshold:{name}": f"vector({value})" for name, value in THRESHOLDS.items()
    }


def test_alerts_compare_against_threshold_series_not_literals() -> None:
    used: set[str] = set()
    for rule in alerts():
        expr = rule["expr"]
        used.update(re.findall(r"preview_worker:threshold:([a-z0-9_]+)", expr))
        # the only literals an alert may hold: 0 (growth/backlog), 120 (poll age), windows
        numbers = set(re.findall(r"(?<![\w.:\[])(\d+(?:\.\d+)?)(?![\w\]])", expr))
        assert numbers <= {"0", "120"}, f"{rule['alert']} holds literals {numbers}"
    assert used == set(THRESHOLDS)


def test_every_alert_has_severity_annotations_and_a_runbook() -> None:
    doc = DOC.read_text() if DOC.exists() else ""
    anchors = {
        re.sub(r"[^a-z0-9 -]", "", h.strip().lower()).replace(" ", "-")
        for h in re.findall(r"^#+ (.+)$", doc, re.M)
    }
    for rule in alerts():
        assert rule["labels"]["severity"] in {"warning", "critical"}
        annotations = rule["annotations"]
        assert {"summary", "description", "runbook"} <= set(annotations)
        anchor = annotations["runbook"].split("#", 1)[1]
        assert annotations["runbook"].startswith("docs/metrics.md#")
        assert anchor == rule["alert"].lower()
        assert anchor in anchors, f"docs/metrics.md has no runbook heading for {rule['alert']}"


def exported_names() -> set[str]:
    metrics = Metrics(queue="q", track="stable")
    metrics.set_depths(dict.fromkeys(STATES, 0))
    text = generate_latest(metrics.registry).decode()
    return {s.name for f in text_string_to_metric_families(text) for s in f.samples}


def test_rules_use_only_series_the_worker_exports() -> None:
    """The prototype alerted on names that did not exist; every name here must."""
    exported = exported_names()
    recorded = {r["record"] for g in groups() for r in g["rules"] if "record" in r}
    for group in groups():
        for rule in group["rules"]:
            for name in re.findall(r"\bpreview_[a-z0-9_:]+", rule["expr"]):
                assert name in exported or name in recorded, f"unknown series {name}"


def with_thresholds(tmp_path: Path, **values: float) -> Path:
    """A copy of the rule file whose threshold group is rewritten, as the chart does."""
    data = load(RULES)
    data["groups"][0]["rules"] = [
        {"record": f"preview_worker:threshold:{name}", "expr": f"vector({value})"}
        for name, value in {**THRESHOLDS, **values}.items()
    ]
    out = tmp_path / "charts" / "preview-worker" / "files" / "prometheus-rules.yaml"
    out.parent.mkdir(parents=True)
    out.write_text(yaml.safe_dump(data, sort_keys=False))
    (tmp_path / "tests" / "promtool").mkdir(parents=True)
    return tmp_path / "tests" / "promtool"


@pytest.mark.parametrize(
    ("test_file", "threshold", "raised", "alert"),
    [
        ("failure_ratio", "failure_ratio", 0.5, "PreviewJobsFailureRatioHigh"),
        ("backlog", "backlog", 2000, "PreviewQueueBacklogHigh"),
        ("duration", "p95_duration_seconds", 300, "PreviewJobDurationP95High"),
        ("canary", "canary_failure_ratio_delta", 0.3, "PreviewCanaryFailureRatioAboveStable"),
    ],
)
def test_rewriting_a_threshold_changes_the_alert(
    tmp_path: Path, test_file: str, threshold: str, raised: float, alert: str
) -> None:
    """Raise one threshold above the firing scenario: its promtool test must now fail."""
    tool = promtool()
    folder = with_thresholds(tmp_path, **{threshold: raised})
    source = ROOT / "tests" / "promtool" / f"{test_file}.yaml"
    (folder / source.name).write_text(source.read_text())
    result = run(tool, "test", "rules", source.name, cwd=folder)
    assert result.returncode != 0
    assert f"alertname: {alert}" in result.stdout + result.stderr
    assert "got:[]" in (result.stdout + result.stderr).replace(" ", "").replace("\n", "")
    unchanged = with_thresholds(tmp_path / "same")
    (unchanged / source.name).write_text(source.read_text())
    again = run(tool, "test", "rules", source.name, cwd=unchanged)
    assert again.returncode == 0, again.stdout + again.stderr
