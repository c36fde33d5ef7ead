"""The GitHub workflows: valid against the workflow schema (offline) and doing what they claim."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

from tests.conftest import require_tool

ROOT = Path(__file__).resolve().parent.parent
WORKFLOWS = sorted((ROOT / ".github/workflows").glob("*.yml"))
SCHEMAS = ("vendor.github-workflows", "custom.github-workflows-require-timeout")


def _check_jsonschema() -> str:
    found = shutil.which("check-jsonschema") or str(
        Path(sys.executable).parent / "check-jsonschema"
    )
    require_tool(Path(found).exists(), "check-jsonschema (PyPI, in .[dev])")
    return found


def _validate(path: Path, schema: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [_check_jsonschema(), "--builtin-schema", schema, "--color", "never", str(path)],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


def _load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = YAML(typ="safe").load((ROOT / ".github/workflows" / name).read_text())
    return data


def _steps(doc: dict[str, Any]) -> list[dict[str, Any]]:
    return [step for job in doc["jobs"].values() for step in job.get("steps", [])]


def _runs(doc: dict[str, Any]) -> str:
    return "\n".join(str(step.get("run", "")) for step in _steps(doc))


def _uses(doc: dict[str, Any]) -> list[str]:
    return [str(step["uses"]) for step in _steps(doc) if "uses" in step]


def test_the_three_workflows_exist() -> None:
    assert [p.name for p in WORKFLOWS] == ["chart.yml", "ci.yml", "image.yml"]


@pytest.mark.parametrize("schema", SCHEMAS)
@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_workflow_matches_schema(path: Path, schema: str) -> None:
    proc = _validate(path, schema)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize(
    ("old", "new", "schema"),
    [
        ("runs-on: ubuntu-24.04", "runs-onn: ubuntu-24.04", SCHEMAS[0]),
        ("permissions:\n  contents: read", "permissions:\n  contents: readwrite", SCHEMAS[0]),
        ("    timeout-minutes: 30\n", "", SCHEMAS[1]),
    ],
)
def test_schema_check_rejects_a_broken_workflow(
    tmp_path: Path, old: str, new: str, schema: str
) -> None:
    text = (ROOT / ".github/workflows/ci.yml").read_text()
    assert old in text
    broken = tmp_path / "ci.yml"
    broken.write_text(text.replace(old, new, 1))
    assert _validate(broken, schema).returncode != 0


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_actions_pinned_and_permissions_minimal(path: Path) -> None:
    doc = YAML(typ="safe").load(path.read_text())
    for uses in _uses(doc):
        _action, _, ref = uses.partition("@")
        assert re.fullmatch(r"v\d+(\.\d+){0,2}|[0-9a-f]{40}", ref), f"{uses}: pin a version"
    assert doc["permissions"] == {"contents": "read"}
    for job in doc["jobs"].values():
        assert isinstance(job.get("timeout-minutes"), int)


def test_ci_runs_make_test_with_a_redis_service() -> None:
    doc = _load("ci.yml")
    (job,) = doc["jobs"].values()
    redis = job["services"]["redis"]
    assert re.fullmatch(r"redis:\d+\.\d+(-alpine)?", redis["image"])
    assert "--health-cmd" in redis["options"]
    assert job["env"]["CI"] == "true"
    runs = _runs(doc)
    assert "make test" in runs
    assert "ci/system-deps.sh" in runs
    assert (ROOT / "ci/system-deps.sh").exists()
    assert re.search(r"^test:", (ROOT / "Makefile").read_text(), re.MULTILINE)
    assert any(u.startswith("actions/setup-python@") for u in _uses(doc))


def test_chart_job_lints_strictly_and_installs_on_kind() -> None:
    doc = _load("chart.yml")
    uses = _uses(doc)
    assert any(u.startswith("helm/chart-testing-action@") for u in uses)
    assert any(u.startswith("helm/kind-action@") for u in uses)
    runs = _runs(doc)
    lint = next(r for r in runs.split("\n") if r.startswith("ct lint"))
    assert "--config ct.yaml" in lint
    ct = YAML(typ="safe").load((ROOT / "ct.yaml").read_text())
    assert ct["validate-maintainers"] is False
    assert ct["helm-lint-extra-args"] == "--strict"
    install = next(r for r in runs.split("\n") if r.startswith("ct install"))
    assert '--namespace "$CI_NAMESPACE"' in install
    assert "--set=image.pullPolicy=Never" in install
    # The prerequisites are the objects the environments' values expect to exist.
    production = YAML(typ="safe").load((ROOT / "values/production.yaml").read_text())
    assert f"secret generic {production['redis']['existingSecret']}" in runs
    assert f"name: {production['persistence']['existingClaim']}" in runs
    assert "prometheus-operator-crds" in runs
    assert "kedacore/keda" in runs
    assert (ROOT / "charts/preview-worker/ci").is_dir()
    # The helm the job installs is the one the local tests pin.
    helm = next(s for s in _steps(doc) if str(s.get("uses", "")).startswith("azure/setup-helm@"))
    provision = (ROOT / "ci/provision-tools.sh").read_text()
    assert f'HELM3_VERSION="{helm["with"]["version"]}"' in provision


def test_image_job_pushes_and_reports_the_digest() -> None:
    doc = _load("image.yml")
    (job,) = doc["jobs"].values()
    build = next(s for s in job["steps"] if str(s.get("uses", "")).startswith("docker/build-push"))
    assert build["id"] == "build"
    assert build["with"]["push"] is True
    assert "REVISION=${{ github.sha }}" in build["with"]["build-args"]
    assert job["permissions"]["packages"] == "write"
    text = (ROOT / ".github/workflows/image.yml").read_text()
    assert "steps.build.outputs.digest" in text
    assert "preview-worker deploy set-image values/staging.yaml" in text
    assert any(u.startswith("hadolint/hadolint-action@") for u in _uses(doc))
