"""`ct lint`, reproduced from ct.yaml with the same tools: yamale with chart-testing's chart
schema, yamllint with its lintconf, `helm lint --strict` per ci/*-values.yaml (Helm 3 and 4), and
the version-increment check against the target branch."""

from __future__ import annotations

import filecmp
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

from ci.check_chart_version import main as check_version_main
from tests.chart.helm import CHART, ROOT, VALUES, helm
from tests.conftest import require_tool

CT = yaml.safe_load((ROOT / "ct.yaml").read_text())
CI_VALUES = sorted((CHART / "ci").glob("*-values.yaml"))
REFERENCE = ROOT.parent / "shared" / "reference" / "chart-testing"


def _venv_tool(name: str) -> str | None:
    candidate = Path(sys.executable).with_name(name)
    return str(candidate) if candidate.exists() else shutil.which(name)


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=120, check=False, cwd=ROOT)


def test_ct_config_is_usable_as_is() -> None:
    assert CT["target-branch"] == "main"
    assert CT["validate-maintainers"] is False
    assert CT["check-version-increment"] is True
    assert CT["validate-chart-schema"] is True and CT["validate-yaml"] is True
    assert "--strict" in CT["helm-lint-extra-args"].split()
    assert CT["charts"] == ["charts/preview-worker"]
    for key in ("chart-yaml-schema", "lint-conf"):
        assert (ROOT / CT[key]).is_file(), f"ct.yaml {key} points at a missing file"


def test_chart_testing_files_are_the_reference_copies() -> None:
    require_tool(REFERENCE.is_dir(), f"chart-testing reference files ({REFERENCE})")
    for name in ("chart_schema.yaml", "lintconf.yaml"):
        assert filecmp.cmp(REFERENCE / name, ROOT / "ci" / "chart-testing" / name, shallow=False)


def test_chart_yaml_passes_yamale() -> None:
    yamale = _venv_tool("yamale")
    require_tool(yamale is not None, "yamale")
    assert yamale is not None
    result = _run(yamale, "-s", CT["chart-yaml-schema"], str(CHART / "Chart.yaml"))
    assert result.returncode == 0, result.stdout + result.stderr


def test_yamale_rejects_a_bad_chart_yaml(tmp_path: Path) -> None:
    yamale = _venv_tool("yamale")
    require_tool(yamale is not None, "yamale")
    assert yamale is not None
    bad = tmp_path / "Chart.yaml"
    bad.write_text("apiVersion: v2\nname: x\nversion: 1.0.0\nkeywords: notalist\n")
    assert _run(yamale, "-s", CT["chart-yaml-schema"], str(bad)).returncode != 0


def test_yaml_files_pass_yamllint() -> None:
    yamllint = _venv_tool("yamllint")
    require_tool(yamllint is not None, "yamllint")
    assert yamllint is not None
    files = [CHART / "Chart.yaml", CHART / "values.yaml", *CI_VALUES, *VALUES.glob("*.yaml")]
    files.append(ROOT / "ct.yaml")
    result = _run(yamllint, "--strict", "-c", CT["lint-conf"], *map(str, files))
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("version", ["helm3", "helm4"])
@pytest.mark.parametrize("values", CI_VALUES, ids=[p.name for p in CI_VALUES])
def test_helm_lint_strict(request: pytest.FixtureRequest, version: str, values: Path) -> None:
    binary: str = request.getfixturevalue(version)
    extra = CT["helm-lint-extra-args"].split()
    result = helm(binary, "lint", *extra, str(CHART), "--values", str(values))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "[WARNING]" not in result.stdout and "[ERROR]" not in result.stdout, result.stdout


def test_ci_values_cover_every_environment() -> None:
    names = {p.name for p in CI_VALUES}
    assert {"staging-values.yaml", "production-values.yaml", "canary-values.yaml"} <= names


def test_chart_metadata() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert chart["apiVersion"] == "v2"
    assert chart["appVersion"] == project["version"]
    assert chart["kubeVersion"].startswith(">=1.29")


def test_version_check_passes_against_the_target_branch(capsys: pytest.CaptureFixture[str]) -> None:
    require_tool(shutil.which("git") is not None, "git")
    inside = _run("git", "rev-parse", "--is-inside-work-tree")
    require_tool(inside.returncode == 0, "a git checkout of the project")
    # A clone of main may be checked out detached, without a local `main`: HEAD is main then.
    has_main = _run("git", "rev-parse", "--verify", "--quiet", "main").returncode == 0
    code = check_version_main(["--base", "main" if has_main else "HEAD"])
    assert code == 0, capsys.readouterr().err


def _git(repo: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True)


def _write_chart(repo: Path, version: str, values: str) -> None:
    chart = repo / "charts" / "preview-worker"
    chart.mkdir(parents=True, exist_ok=True)
    (chart / "Chart.yaml").write_text(f"apiVersion: v2\nname: preview-worker\nversion: {version}\n")
    (chart / "values.yaml").write_text(values)


def test_version_check_fails_on_a_change_without_a_bump(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    require_tool(shutil.which("git") is not None, "git")
    repo = tmp_path / "repo"
    repo.mkdir()
    _git(repo, "init", "-q", "-b", "main")
    _git(repo, "config", "user.email", "t@example.com")
    _git(repo, "config", "user.name", "t")
    _write_chart(repo, "0.1.0", "a: 1\n")
    (repo / "README").write_text("x\n")
    _git(repo, "add", ".")
    _git(repo, "commit", "-qm", "base")
    _git(repo, "checkout", "-qb", "feature")
    args = ["--repo", str(repo), "--base", "main"]

    (repo / "README").write_text("y\n")
    _git(repo, "commit", "-qam", "not the chart")
    assert check_version_main(args) == 0

    _write_chart(repo, "0.1.0", "a: 2\n")
    _git(repo, "commit", "-qam", "chart change")
    assert check_version_main(args) == 1
    assert "bump `version`" in capsys.readouterr().err

    _write_chart(repo, "0.1.0-rc.1", "a: 2\n")
    _git(repo, "commit", "-qam", "a pre-release is lower")
    assert check_version_main(args) == 1

    _write_chart(repo, "0.1.1", "a: 2\n")
    _git(repo, "commit", "-qam", "bump")
    assert check_version_main(args) == 0

    _write_chart(repo, "one", "a: 3\n")
    _git(repo, "commit", "-qam", "garbage")
    assert check_version_main(args) == 2
    assert "not semantic" in capsys.readouterr().err
    assert check_version_main(["--repo", str(repo), "--base", "nope"]) == 2
