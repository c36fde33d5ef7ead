"""`checkov --framework helm` over every environment: zero failed checks; each skip has a reason."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from tests.chart.helm import CHART, ROOT, TOOLS_BIN, helm_binary, tool, tools_env
from tests.conftest import require_tool

CONFIG = ROOT / "ci" / "checkov.yaml"
ENV_VALUES = sorted((CHART / "ci").glob("*-values.yaml"))


class Runs:
    """All environments scanned at once (one checkov process each, in parallel)."""

    def __init__(self) -> None:
        checkov = tool("checkov")
        require_tool(checkov is not None, "checkov (.tools/bin/checkov, `make tools`)")
        # checkov renders with the `helm` on PATH and silently scans nothing without one.
        require_tool(helm_binary("helm3") is not None, "helm (.tools/bin/helm)")
        assert checkov is not None
        assert (TOOLS_BIN / "helm").exists()
        self.procs = {
            values.name: subprocess.Popen(
                [
                    checkov,
                    "--config-file",
                    str(CONFIG),
                    "-d",
                    str(CHART),
                    "--var-file",
                    str(values),
                    "-o",
                    "json",
                ],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env=tools_env(),
                cwd=ROOT,
            )
            for values in ENV_VALUES
        }
        self.results: dict[str, tuple[int, str, str]] = {}

    def get(self, name: str) -> tuple[int, str, str]:
        if name not in self.results:
            out, err = self.procs[name].communicate(timeout=900)
            self.results[name] = (self.procs[name].returncode, out, err)
        return self.results[name]


@pytest.fixture(scope="module")
def runs() -> Runs:
    return Runs()


def _checkov(runs: Runs, name: str) -> dict[str, object]:
    code, out, err = runs.get(name)
    assert out.strip(), err
    report = json.loads(out)
    reports = report if isinstance(report, list) else [report]
    helm_reports = [r for r in reports if r.get("check_type") == "helm"]
    assert len(helm_reports) == 1, out[:2000]
    summary = helm_reports[0]
    failed = summary["results"]["failed_checks"]
    lines = [f"{f['check_id']} {f['resource']}: {f['check_name']}" for f in failed]
    assert code == 0 and not failed, "\n".join(lines) or err
    return dict(summary["summary"])


@pytest.mark.parametrize("values", ENV_VALUES, ids=[p.name for p in ENV_VALUES])
def test_checkov_passes(runs: Runs, values: Path) -> None:
    summary = _checkov(runs, values.name)
    assert summary["failed"] == 0
    assert isinstance(summary["resource_count"], int) and summary["resource_count"] >= 8, summary
    assert isinstance(summary["passed"], int) and summary["passed"] > 100, summary


def test_every_skip_has_a_reason() -> None:
    lines = CONFIG.read_text().splitlines()
    start = lines.index("skip-check:")
    reason: list[str] = []
    skips = 0
    for line in lines[start + 1 :]:
        stripped = line.strip()
        if stripped.startswith("#"):
            reason.append(stripped.lstrip("# "))
        elif stripped.startswith("- "):
            assert re.fullmatch(r"- CKV2?_K8S_\d+", stripped), stripped
            assert len(" ".join(reason)) > 30, f"{stripped} has no reason above it"
            reason = []
            skips += 1
        elif stripped:
            break
    assert skips >= 1
    for template in (CHART / "templates").rglob("*.yaml"):
        for match in re.finditer(r"checkov\.io/skip\d+: (\S+)=(.*)", template.read_text()):
            assert len(match[2].strip()) > 20, f"{template.name}: {match[1]} lacks a reason"
