"""Rendering the chart with the pinned helm binaries, for the chart tests.

Environments are the release layouts docs/rollout.md installs: every test renders through
:func:`render`, which the session-scoped ``rendered`` fixture caches (one render per environment and
helm version per session).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "preview-worker"
VALUES = ROOT / "values"
TOOLS_BIN = ROOT / ".tools" / "bin"
HELM_VERSIONS = {"helm3": "v3.19.0", "helm4": "v4.3.1"}
KUBE_VERSIONS = tuple(f"1.{minor}.0" for minor in range(29, 38))
CRD_SCHEMAS = ROOT.parent / "shared" / "reference" / "crds" / "json"

Obj = dict[str, Any]


@dataclass(frozen=True)
class Env:
    name: str
    release: str
    namespace: str
    files: tuple[Path, ...]


ENVS: dict[str, Env] = {
    env.name: env
    for env in (
        Env("default", "preview-worker", "preview", ()),
        Env("staging", "preview-worker", "preview-staging", (VALUES / "staging.yaml",)),
        Env("production", "preview-worker", "preview", (VALUES / "production.yaml",)),
        Env(
            "canary",
            "preview-worker-canary",
            "preview",
            (VALUES / "production.yaml", VALUES / "canary.yaml"),
        ),
        Env("keda", "preview-worker", "preview", (CHART / "ci" / "keda-values.yaml",)),
    )
}


def tool(name: str) -> str | None:
    """Path of a tool, preferring the project's pinned .tools/bin."""
    pinned = TOOLS_BIN / name
    if pinned.is_file() and os.access(pinned, os.X_OK):
        return str(pinned)
    return shutil.which(name)


def helm_binary(version: str) -> str | None:
    """The pinned helm binary (``helm3`` or ``helm4``) from .tools/bin only: no system helm."""
    pinned = TOOLS_BIN / version
    return str(pinned) if pinned.is_file() and os.access(pinned, os.X_OK) else None


def tools_env() -> dict[str, str]:
    """The environment with .tools/bin first on PATH."""
    env = dict(os.environ)
    env["PATH"] = f"{TOOLS_BIN}{os.pathsep}{env.get('PATH', '')}"
    return env


def helm(binary: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [binary, *args], capture_output=True, text=True, timeout=120, env=tools_env(), check=False
    )


def template_args(env: Env, extra: Sequence[str] = ()) -> list[str]:
    args = ["template", env.release, str(CHART), "--namespace", env.namespace]
    for path in env.files:
        args += ["-f", str(path)]
    return [*args, *extra]


def parse(text: str) -> list[Obj]:
    return [doc for doc in yaml.safe_load_all(text) if doc]


def render(binary: str, env: Env, extra: Sequence[str] = ()) -> list[Obj]:
    result = helm(binary, *template_args(env, extra))
    if result.returncode != 0:
        raise AssertionError(f"helm template {env.name} failed:\n{result.stderr}")
    return parse(result.stdout)


def by_kind(objs: list[Obj], kind: str) -> list[Obj]:
    return [o for o in objs if o["kind"] == kind]


def one(objs: list[Obj], kind: str) -> Obj:
    found = by_kind(objs, kind)
    names = [o["metadata"]["name"] for o in found]
    assert len(found) == 1, f"expected one {kind}, got {names}"
    return found[0]


def workload(objs: list[Obj]) -> Obj:
    return one(objs, "Deployment")


def hooks(objs: list[Obj]) -> list[Obj]:
    return [o for o in objs if "helm.sh/hook" in o["metadata"].get("annotations", {})]
