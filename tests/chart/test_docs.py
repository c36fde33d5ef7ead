"""The chart README's values table is generated from values.yaml, and every key is documented."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from app.deploy import ENVIRONMENTS
from ci.chart_readme import DocError, entries
from ci.chart_readme import main as readme_main
from ci.sync_ci_values import main as sync_main
from ci.sync_ci_values import merge
from tests.chart.helm import CHART, ENVS, ROOT


def _all_paths(data: Any, prefix: tuple[str, ...] = ()) -> set[tuple[str, ...]]:
    paths: set[tuple[str, ...]] = set()
    if isinstance(data, dict):
        for key, value in data.items():
            path = (*prefix, str(key))
            paths.add(path)
            paths |= _all_paths(value, path)
    return paths


def test_every_values_key_is_documented() -> None:
    text = (CHART / "values.yaml").read_text()
    documented = {e.path for e in entries(text)}
    assert documented == _all_paths(yaml.safe_load(text))


def test_readme_is_up_to_date(capsys: pytest.CaptureFixture[str]) -> None:
    assert readme_main(["--check"]) == 0, capsys.readouterr().err


def test_an_undocumented_key_is_reported() -> None:
    text = "# -- documented\na: 1\nb:\n  # -- inner\n  c: 2\n"
    with pytest.raises(DocError, match=r"undocumented values\.yaml keys: b$"):
        entries(text)
    with pytest.raises(DocError, match=r"\bd\.e\b"):
        entries("# -- d\nd:\n  e: [1]\n")


def test_ci_values_are_generated_from_the_environments(capsys: pytest.CaptureFixture[str]) -> None:
    assert sync_main(["--check"]) == 0, capsys.readouterr().err


def test_merge_follows_helm() -> None:
    base = {"a": {"x": 1, "y": [1, 2]}, "b": 1, "c": 3}
    over = {"a": {"y": [3]}, "b": None, "d": {"z": 1}}
    assert merge(base, over) == {"a": {"x": 1, "y": [3]}, "c": 3, "d": {"z": 1}}
    assert base["a"] == {"x": 1, "y": [1, 2]}


def test_rollout_doc_walks_every_step() -> None:
    doc = (ROOT / "docs" / "rollout.md").read_text()
    for needle in (
        "helm upgrade --install preview-worker charts/preview-worker",
        "-f values/staging.yaml",
        "-f values/production.yaml -f values/canary.yaml",
        "preview-worker-canary",
        "helm rollback",
        "helm uninstall preview-worker-canary",
        "preview-worker dlq requeue --all",
        "PreviewCanaryFailureRatioAboveStable",
        "helm test",
    ):
        assert needle in doc, needle


def test_environments_match_the_deploy_command() -> None:
    doc = (ROOT / "docs" / "rollout.md").read_text()
    for name, release in ENVIRONMENTS.items():
        env = ENVS[name]
        files = tuple(str(p.relative_to(ROOT)) for p in env.files)
        assert (env.release, env.namespace, files) == (
            release.name,
            release.namespace,
            release.values,
        ), name
        flags = " ".join(f"-f {f}" for f in release.values)
        command = (
            f"helm upgrade --install {release.name} charts/preview-worker -n {release.namespace}"
        )
        assert command in doc, command
        assert flags in doc, flags
