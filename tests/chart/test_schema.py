"""values.schema.json: bad values fail `helm template` with a message naming the key and rule."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.chart.helm import CHART, ENVS, helm, template_args

SCHEMA_ERROR = "values don't meet the specifications of the schema"

# (id, --set-json assignments, text the error must contain)
REJECTED: list[tuple[str, list[str], str]] = [
    ("unknown-top-level-key", ["replicas=3"], "additional properties 'replicas' not allowed"),
    (
        "misspelt-nested-key",
        ['worker={"concurency": 4}'],
        "additional properties 'concurency' not allowed",
    ),
    ("latest-tag", ['image.tag="latest"'], "latest is refused"),
    ("latest-tag-any-case", ['image.tag="LATEST"'], "latest is refused"),
    ("bad-digest", ['image.digest="sha256:abc"'], "/image/digest"),
    ("unknown-track", ['track="beta"'], "/track"),
    ("concurrency-zero", ["worker.concurrency=0"], "/worker/concurrency"),
    ("concurrency-not-integer", ["worker.concurrency=1.5"], "/worker/concurrency"),
    ("grace-as-string", ['worker.shutdownGraceSeconds="25"'], "/worker/shutdownGraceSeconds"),
    ("margin-too-small", ["terminationGraceMarginSeconds=0"], "/terminationGraceMarginSeconds"),
    ("root-uid", ["securityContext.runAsUser=0"], "/securityContext/runAsUser"),
    ("uid-below-10001", ["securityContext.runAsUser=1000"], "/securityContext/runAsUser"),
    ("log-level", ['worker.logLevel="trace"'], "/worker/logLevel"),
    ("bad-queue-name", ['worker.queue="bad queue!"'], "/worker/queue"),
    ("redis-url-scheme", ['redis.url="http://redis:6379"'], "/redis/url"),
    ("asset-host-url", ['worker.assetHosts=["https://cdn.example.com"]'], "/worker/assetHosts/0"),
    ("pull-policy", ['image.pullPolicy="Sometimes"'], "/image/pullPolicy"),
    ("service-port-range", ["service.port=70000"], "/service/port"),
    ("limits-removed", ["resources.limits=null"], "missing property 'limits'"),
    ("failure-ratio-over-one", ["prometheusRule.thresholds.failureRatio=1.5"], "failureRatio"),
    (
        "hpa-and-keda",
        ["autoscaling.enabled=true", "keda.enabled=true"],
        "/keda/enabled': value must be false",
    ),
    (
        "canary-with-hpa",
        ['track="canary"', "autoscaling.enabled=true"],
        "/autoscaling/enabled': value must be false",
    ),
    (
        "canary-with-pdb",
        ['track="canary"', "pdb.enabled=true"],
        "/pdb/enabled': value must be false",
    ),
    (
        "canary-with-rules",
        ['track="canary"', "prometheusRule.enabled=true"],
        "/prometheusRule/enabled': value must be false",
    ),
    ("keda-address-is-url", ['keda.redisAddress="redis://r:6379"'], "/keda/redisAddress"),
    ("pdb-percent", ['pdb.maxUnavailable="150%"'], "/pdb/maxUnavailable"),
    ("cpu-quantity", ['resources.requests.cpu="lots"'], "/resources/requests/cpu"),
    ("probe-period", ["probes.readiness.periodSeconds=0"], "/probes/readiness/periodSeconds"),
    ("access-mode", ['persistence.accessModes=["ReadWriteSometimes"]'], "/persistence/accessModes"),
]


def _template(binary: str, assignments: list[str]) -> tuple[int, str]:
    extra: list[str] = []
    for assignment in assignments:
        extra += ["--set-json", assignment]
    result = helm(binary, *template_args(ENVS["default"], extra))
    return result.returncode, result.stderr


@pytest.mark.parametrize("version", ["helm3", "helm4"])
@pytest.mark.parametrize(
    ("assignments", "message"), [c[1:] for c in REJECTED], ids=[c[0] for c in REJECTED]
)
def test_bad_values_are_rejected_with_a_clear_message(
    request: pytest.FixtureRequest, version: str, assignments: list[str], message: str
) -> None:
    binary: str = request.getfixturevalue(version)
    code, stderr = _template(binary, assignments)
    assert code != 0, f"{assignments} was accepted"
    assert SCHEMA_ERROR in stderr, stderr
    assert message in stderr, stderr
    assert "panic" not in stderr and "goroutine" not in stderr


def test_there_are_at_least_twelve_rejection_cases() -> None:
    assert len(REJECTED) >= 12
    assert len({c[0] for c in REJECTED}) == len(REJECTED)


@pytest.mark.parametrize(
    "assignments",
    [
        ['global={"imageRegistry": "mirror.example", "anything": {"goes": true}}'],
        ['image.digest="sha256:' + "a" * 64 + '"'],
        ['pdb.maxUnavailable="50%"'],
        ["worker.shutdownGraceSeconds=0.5"],
        ['redis.existingSecret="team-redis"', 'redis.url=""'],
        ['track="canary"', "replicaCount=1"],
    ],
    ids=["global", "digest", "pdb-percent", "fractional-grace", "existing-secret", "canary"],
)
def test_good_values_are_accepted(helm3: str, assignments: list[str]) -> None:
    code, stderr = _template(helm3, assignments)
    assert code == 0, stderr


def _objects(node: Any, path: str = "") -> list[tuple[str, dict[str, Any]]]:
    found: list[tuple[str, dict[str, Any]]] = []
    if isinstance(node, dict):
        if node.get("type") == "object" and "properties" in node:
            found.append((path or "/", node))
        for key, child in node.items():
            if key in ("properties", "patternProperties"):
                for name, sub in child.items():
                    found += _objects(sub, f"{path}/{name}")
            elif isinstance(child, (dict, list)) and key not in ("if", "then", "not"):
                found += _objects(child, path)
    elif isinstance(node, list):
        for child in node:
            found += _objects(child, path)
    return found


def test_every_chart_owned_object_is_closed() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    objects = _objects(schema)
    assert len(objects) > 20
    for path, node in objects:
        assert node.get("additionalProperties") is False, f"{path} accepts unknown keys"
    assert schema["properties"]["global"]["type"] == "object"


def test_default_values_satisfy_the_schema_with_every_key_declared() -> None:
    import yaml
    from jsonschema import Draft7Validator

    schema = json.loads((CHART / "values.schema.json").read_text())
    Draft7Validator.check_schema(schema)
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    errors = sorted(Draft7Validator(schema).iter_errors(values), key=str)
    assert not errors, [e.message for e in errors]
    assert set(values) == set(schema["properties"]) - {"global"}


@pytest.mark.parametrize("version", ["helm3", "helm4"])
def test_created_secret_needs_a_url(request: pytest.FixtureRequest, version: str) -> None:
    binary: str = request.getfixturevalue(version)
    code, stderr = _template(binary, ['redis.existingSecret=""', 'redis.url=""'])
    assert code != 0
    assert "/redis/url" in stderr, stderr


@pytest.mark.parametrize(
    ("assignments", "message"),
    [
        (
            ["autoscaling.enabled=true", "autoscaling.minReplicas=5", "autoscaling.maxReplicas=2"],
            "autoscaling.minReplicas (5) must not exceed autoscaling.maxReplicas (2)",
        ),
        (
            ["keda.enabled=true", "keda.minReplicaCount=4", "keda.maxReplicaCount=3"],
            "keda.minReplicaCount (4) must not exceed keda.maxReplicaCount (3)",
        ),
    ],
    ids=["hpa-min-over-max", "keda-min-over-max"],
)
def test_inconsistent_bounds_fail_with_a_message(
    helm3: str, assignments: list[str], message: str
) -> None:
    code, stderr = _template(helm3, assignments)
    assert code != 0
    assert message in stderr, stderr
