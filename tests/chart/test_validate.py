"""Every rendered object validated: core kinds with `kubernetes-validate --strict` for Kubernetes
1.29 through 1.37 (one run), CRD kinds against the prometheus-operator and KEDA CRD schemas."""

from __future__ import annotations

import functools
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from jsonschema import Draft7Validator

from tests.chart.conftest import Renders
from tests.chart.helm import CRD_SCHEMAS, ENVS, KUBE_VERSIONS, Obj, by_kind
from tests.conftest import require_tool

CRD_KINDS = {
    ("monitoring.coreos.com/v1", "ServiceMonitor"): "servicemonitor_v1.json",
    ("monitoring.coreos.com/v1", "PrometheusRule"): "prometheusrule_v1.json",
    ("keda.sh/v1alpha1", "ScaledObject"): "scaledobject_v1alpha1.json",
}


def _kubernetes_validate() -> str | None:
    candidate = Path(sys.executable).with_name("kubernetes-validate")
    return str(candidate) if candidate.exists() else shutil.which("kubernetes-validate")


def _run_kubernetes_validate(paths: list[Path]) -> subprocess.CompletedProcess[str]:
    binary = _kubernetes_validate()
    require_tool(binary is not None, "kubernetes-validate (pip install -e '.[dev]')")
    assert binary is not None
    args = [binary, "--strict"]
    for version in KUBE_VERSIONS:
        args += ["-k", version]
    return subprocess.run(
        [*args, *map(str, paths)], capture_output=True, text=True, timeout=300, check=False
    )


def _core(objs: list[Obj]) -> list[Obj]:
    return [o for o in objs if (o["apiVersion"], o["kind"]) not in CRD_KINDS]


def test_every_core_object_validates_strictly_on_every_kubernetes_version(
    renders: Renders, monkeypatch: pytest.MonkeyPatch
) -> None:
    kv = _kv_utils()
    # kubernetes-validate re-reads its (large) schema files for every object and version: cache.
    monkeypatch.setattr(kv, "schema_contents", functools.cache(kv.schema_contents))
    # Each distinct object once: helm 3 and 4 render the same objects (test_render checks it),
    # and environments share many objects.
    unique: dict[str, Obj] = {}
    for version in ("helm3", "helm4"):
        for env in ENVS:
            for obj in _core(renders.get(version, env)):
                unique.setdefault(json.dumps(obj, sort_keys=True), obj)
    failures: list[str] = []
    validated: set[str] = set()
    for obj in unique.values():
        name = f"{obj['kind']}/{obj['metadata']['name']}"
        for version in KUBE_VERSIONS:
            try:
                validated.add(kv.validate(obj, version, strict=True))
            except kv.ValidationError as exc:
                path = ".".join(str(p) for p in exc.path)
                failures.append(f"{name} on {version}: {path}: {exc.message}")
            except kv.SchemaNotFoundError as exc:
                failures.append(f"{name} on {version}: no schema ({exc.message})")
    assert not failures, "\n".join(failures)
    assert validated == {f"1.{minor}" for minor in range(29, 38)}
    kinds = {o["kind"] for o in unique.values()}
    assert {"Deployment", "Service", "ConfigMap", "Secret", "NetworkPolicy", "Pod"} <= kinds


def _kv_utils() -> Any:
    import kubernetes_validate.utils as kv

    return kv


def test_strict_validation_catches_an_unknown_field(renders: Renders, tmp_path: Path) -> None:
    deploy = json.loads(json.dumps(by_kind(renders.get("helm3", "default"), "Deployment")[0]))
    deploy["spec"]["template"]["spec"]["containers"][0]["securityContext"]["readOnlyRoot"] = True
    path = tmp_path / "broken.yaml"
    path.write_text(yaml.safe_dump(deploy))
    result = _run_kubernetes_validate([path])
    assert result.returncode != 0
    assert "readOnlyRoot" in result.stdout


def _schema(file: str) -> dict[str, Any]:
    path = CRD_SCHEMAS / file
    require_tool(path.is_file(), f"CRD schema {path} (shared/reference/crds/json)")
    schema: dict[str, Any] = json.loads(path.read_text())
    return schema


def unknown_fields(obj: Any, schema: dict[str, Any], path: str = "") -> list[str]:
    """Fields the CRD schema does not declare (the CRD schemas do not close their objects)."""
    if schema.get("x-kubernetes-preserve-unknown-fields"):
        return []
    found: list[str] = []
    if isinstance(obj, dict):
        props = schema.get("properties", {})
        extra = schema.get("additionalProperties")
        for key, value in obj.items():
            if path == "" and key == "metadata":
                continue  # ObjectMeta: the CRD schema leaves it to the API server
            if key in props:
                found += unknown_fields(value, props[key], f"{path}.{key}")
            elif isinstance(extra, dict):
                found += unknown_fields(value, extra, f"{path}.{key}")
            else:
                found.append(f"{path}.{key}")
    elif isinstance(obj, list) and isinstance(schema.get("items"), dict):
        for i, item in enumerate(obj):
            found += unknown_fields(item, schema["items"], f"{path}[{i}]")
    return found


@pytest.mark.parametrize("version", ["helm3", "helm4"])
def test_crd_objects_validate_against_their_crd_schemas(renders: Renders, version: str) -> None:
    seen: set[str] = set()
    for env in ENVS:
        for obj in renders.get(version, env):
            key = (obj["apiVersion"], obj["kind"])
            if key not in CRD_KINDS:
                continue
            seen.add(obj["kind"])
            schema = _schema(CRD_KINDS[key])
            errors = [e.message for e in Draft7Validator(schema).iter_errors(obj)]
            assert not errors, f"{env} {obj['kind']}: {errors}"
            assert not unknown_fields(obj, schema), f"{env} {obj['kind']}"
    assert seen == {"ServiceMonitor", "PrometheusRule", "ScaledObject"}


def test_crd_check_catches_a_wrong_field(renders: Renders) -> None:
    sm = json.loads(json.dumps(by_kind(renders.get("helm3", "production"), "ServiceMonitor")[0]))
    schema = _schema(CRD_KINDS[("monitoring.coreos.com/v1", "ServiceMonitor")])
    sm["spec"]["endpoints"][0]["targetport"] = "http"
    assert unknown_fields(sm, schema) == [".spec.endpoints[0].targetport"]
    sm["spec"]["endpoints"] = "http"
    assert list(Draft7Validator(schema).iter_errors(sm))
