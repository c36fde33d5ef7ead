"""The rendered PrometheusRule is a valid Prometheus rule file (promtool), thresholds included."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import yaml

from tests.chart.conftest import Renders
from tests.chart.helm import ENVS, one, render
from tests.conftest import require_tool


def _promtool_check(groups: object, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    promtool = shutil.which("promtool")
    require_tool(promtool is not None, "promtool (apt-get install prometheus)")
    assert promtool is not None
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump({"groups": groups}))
    return subprocess.run(
        [promtool, "check", "rules", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_rendered_rules_pass_promtool(renders: Renders, tmp_path: Path) -> None:
    rule = one(renders.get("helm3", "production"), "PrometheusRule")
    result = _promtool_check(rule["spec"]["groups"], tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_large_and_fractional_thresholds_stay_valid_promql(helm3: str, tmp_path: Path) -> None:
    objs = render(
        helm3,
        ENVS["production"],
        [
            "--set-json",
            "prometheusRule.thresholds.backlog=12000000",
            "--set-json",
            "prometheusRule.thresholds.p95DurationSeconds=0.75",
        ],
    )
    groups = one(objs, "PrometheusRule")["spec"]["groups"]
    exprs = {
        r["record"]: r["expr"]
        for g in groups
        if g["name"] == "preview-worker.thresholds"
        for r in g["rules"]
    }
    assert exprs["preview_worker:threshold:backlog"] == "vector(12000000)"
    assert exprs["preview_worker:threshold:p95_duration_seconds"] == "vector(0.75)"
    result = _promtool_check(groups, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_rejects_a_broken_rule(tmp_path: Path) -> None:
    result = _promtool_check(
        [{"name": "x", "rules": [{"record": "a:b", "expr": "sum("}]}], tmp_path
    )
    assert result.returncode != 0
