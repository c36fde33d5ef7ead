"""Tests of the rendered objects: `helm template` of every environment, parsed."""

from __future__ import annotations

import base64
import json
import math
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from app.settings import ENV_VARS
from tests.chart.conftest import Renders
from tests.chart.helm import (
    CHART,
    ENVS,
    VALUES,
    Obj,
    by_kind,
    helm,
    hooks,
    one,
    parse,
    render,
    template_args,
    workload,
)

VERSIONS = ("helm3", "helm4")
ENV_NAMES = tuple(ENVS)


def _container(objs: list[Obj]) -> Obj:
    containers = workload(objs)["spec"]["template"]["spec"]["containers"]
    assert [c["name"] for c in containers] == ["worker"]
    return dict(containers[0])


def _matches(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def _values(env: str) -> dict[str, object]:
    merged: dict[str, object] = yaml.safe_load((CHART / "values.yaml").read_text())
    for path in ENVS[env].files:
        over = yaml.safe_load(path.read_text()) or {}
        merged = _merge(merged, over)
    return merged


def _merge(base: dict[str, object], over: dict[str, object]) -> dict[str, object]:
    out = dict(base)
    for key, value in over.items():
        old = out.get(key)
        if isinstance(value, dict) and isinstance(old, dict):
            out[key] = _merge(old, value)
        else:
            out[key] = value
    return out


@pytest.mark.parametrize("env", ENV_NAMES)
def test_helm3_and_helm4_render_the_same_objects(renders: Renders, env: str) -> None:
    assert renders.get("helm3", env) == renders.get("helm4", env)


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("env", ENV_NAMES)
def test_every_object_is_labelled_and_namespaced(renders: Renders, version: str, env: str) -> None:
    e = ENVS[env]
    for obj in renders.get(version, env):
        meta = obj["metadata"]
        where = f"{obj['kind']}/{meta['name']}"
        assert meta["namespace"] == e.namespace, where
        labels = meta["labels"]
        assert labels["app.kubernetes.io/instance"] == e.release, where
        assert labels["app.kubernetes.io/name"] == "preview-worker", where
        assert labels["app.kubernetes.io/managed-by"] == "Helm", where
        assert meta["name"].startswith(e.release), where


@pytest.mark.parametrize("env", ENV_NAMES)
def test_selectors_match_the_pods(renders: Renders, env: str) -> None:
    objs = renders.get("helm3", env)
    deploy = workload(objs)
    pod_labels = deploy["spec"]["template"]["metadata"]["labels"]
    selector = deploy["spec"]["selector"]["matchLabels"]
    assert _matches(selector, pod_labels)
    assert set(selector) == {
        "app.kubernetes.io/name",
        "app.kubernetes.io/instance",
        "app.kubernetes.io/component",
    }, "selector labels must never include mutable labels (version, track)"
    service = one(objs, "Service")
    assert service["spec"]["selector"] == selector
    for np in by_kind(objs, "NetworkPolicy"):
        if "helm.sh/hook" not in np["metadata"].get("annotations", {}):
            assert np["spec"]["podSelector"]["matchLabels"] == selector
    for pdb in by_kind(objs, "PodDisruptionBudget"):
        assert pdb["spec"]["selector"]["matchLabels"] == selector
    spread = deploy["spec"]["template"]["spec"]["topologySpreadConstraints"]
    assert spread[0]["topologyKey"] == "kubernetes.io/hostname"
    assert spread[0]["labelSelector"]["matchLabels"] == selector
    for target in by_kind(objs, "HorizontalPodAutoscaler") + by_kind(objs, "ScaledObject"):
        assert target["spec"]["scaleTargetRef"]["name"] == deploy["metadata"]["name"]


@pytest.mark.parametrize("env", ENV_NAMES)
def test_service_monitor_selects_the_service_and_its_named_port(renders: Renders, env: str) -> None:
    objs = renders.get("helm3", env)
    service = one(objs, "Service")
    assert service["spec"]["ports"] == [
        {
            "name": "http",
            "port": service["spec"]["ports"][0]["port"],
            "targetPort": "http",
            "protocol": "TCP",
        }
    ]
    container_ports = {p["name"]: p["containerPort"] for p in _container(objs)["ports"]}
    assert container_ports == {"http": int(_container_env(objs)["PREVIEW_HEALTH_PORT"])}
    for sm in by_kind(objs, "ServiceMonitor"):
        assert _matches(sm["spec"]["selector"]["matchLabels"], service["metadata"]["labels"])
        assert sm["spec"]["namespaceSelector"]["matchNames"] == [ENVS[env].namespace]
        assert [(e["port"], e["path"]) for e in sm["spec"]["endpoints"]] == [("http", "/metrics")]


def _container_env(objs: list[Obj]) -> dict[str, str]:
    configmap = next(
        o
        for o in by_kind(objs, "ConfigMap")
        if o["metadata"]["name"] == workload(objs)["metadata"]["name"]
    )
    return dict(configmap["data"])


def test_canary_and_stable_are_distinct_releases_on_the_same_queue(renders: Renders) -> None:
    stable = renders.get("helm3", "production")
    canary = renders.get("helm3", "canary")
    stable_names = {(o["kind"], o["metadata"]["name"]) for o in stable}
    canary_names = {(o["kind"], o["metadata"]["name"]) for o in canary}
    assert not stable_names & canary_names, "the two releases would fight over objects"
    assert _container_env(stable)["PREVIEW_QUEUE"] == _container_env(canary)["PREVIEW_QUEUE"]
    assert _container_env(stable)["PREVIEW_TRACK"] == "stable"
    assert _container_env(canary)["PREVIEW_TRACK"] == "canary"
    stable_sel = workload(stable)["spec"]["selector"]["matchLabels"]
    canary_pods = workload(canary)["spec"]["template"]["metadata"]["labels"]
    assert not _matches(stable_sel, canary_pods), "stable's selector must not adopt canary pods"
    assert workload(canary)["spec"]["replicas"] == 1
    assert (
        workload(canary)["spec"]["template"]["metadata"]["labels"]["preview-worker/track"]
        == "canary"
    )
    kinds = {o["kind"] for o in canary}
    for absent in (
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
        "PrometheusRule",
        "ScaledObject",
        "Secret",
        "PersistentVolumeClaim",
    ):
        assert absent not in kinds, f"canary must not own a {absent}"
    assert "ServiceMonitor" in kinds, "canary pods must be scraped to be compared"
    # Same Secret and data volume as stable.
    vols = {v["name"]: v for v in workload(canary)["spec"]["template"]["spec"]["volumes"]}
    stable_vols = {v["name"]: v for v in workload(stable)["spec"]["template"]["spec"]["volumes"]}
    assert vols["data"] == stable_vols["data"]
    redis = _redis_env(canary)
    assert redis == _redis_env(stable)


def test_production_is_autoscaled_and_protected(renders: Renders) -> None:
    objs = renders.get("helm3", "production")
    assert "replicas" not in workload(objs)["spec"], "the HPA owns replicas"
    hpa = one(objs, "HorizontalPodAutoscaler")
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert {m["resource"]["name"] for m in hpa["spec"]["metrics"]} == {"cpu", "memory"}
    one(objs, "PodDisruptionBudget")
    one(objs, "ServiceMonitor")
    one(objs, "PrometheusRule")
    dashboards = [
        o for o in by_kind(objs, "ConfigMap") if o["metadata"]["name"].endswith("-dashboard")
    ]
    assert len(dashboards) == 1


def test_staging_is_one_pod_one_job_verbose(renders: Renders) -> None:
    objs = renders.get("helm3", "staging")
    assert workload(objs)["spec"]["replicas"] == 1
    env = _container_env(objs)
    assert env["PREVIEW_WORKER_CONCURRENCY"] == "1"
    assert env["PREVIEW_LOG_LEVEL"] == "debug"
    kinds = {o["kind"] for o in objs}
    assert not kinds & {"HorizontalPodAutoscaler", "ScaledObject", "PrometheusRule"}


def test_keda_scales_on_the_queue_lists_instead_of_the_hpa(renders: Renders) -> None:
    objs = renders.get("helm3", "keda")
    assert "replicas" not in workload(objs)["spec"]
    assert not by_kind(objs, "HorizontalPodAutoscaler")
    so = one(objs, "ScaledObject")
    queue = _container_env(objs)["PREVIEW_QUEUE"]
    lists = [t["metadata"]["listName"] for t in so["spec"]["triggers"]]
    assert lists == [f"pw:{{{queue}}}:wait:{p}" for p in ("high", "normal", "low")]
    assert {t["type"] for t in so["spec"]["triggers"]} == {"redis"}
    for trigger in so["spec"]["triggers"]:
        assert "redis://" not in json.dumps(trigger), "KEDA gets host:port, never the secret URL"
        assert trigger["authenticationRef"]["name"] == "preview-worker-redis-auth"


def test_keda_on_a_redis_cluster(helm3: str) -> None:
    objs = render(helm3, ENVS["keda"], ["--set", "redis.cluster=true"])
    triggers = one(objs, "ScaledObject")["spec"]["triggers"]
    assert {t["type"] for t in triggers} == {"redis-cluster"}
    assert all(t["metadata"]["addresses"] == "redis-master:6379" for t in triggers)
    assert _container_env(objs)["PREVIEW_REDIS_CLUSTER"] == "true"


@pytest.mark.parametrize("env", ENV_NAMES)
def test_probes_hit_the_workers_real_paths_and_port(renders: Renders, env: str) -> None:
    health = Path(__file__).resolve().parents[2] / "app" / "health.py"
    routes = set(re.findall(r'Route\("(/[a-z]+)"', health.read_text()))
    assert {"/healthz", "/readyz", "/metrics"} <= routes, routes
    container = _container(renders.get("helm3", env))
    liveness = container["livenessProbe"]["httpGet"]
    readiness = container["readinessProbe"]["httpGet"]
    assert (liveness["path"], liveness["port"]) == ("/healthz", "http")
    assert (readiness["path"], readiness["port"]) == ("/readyz", "http")
    assert "command" not in container  # keep the image ENTRYPOINT: tini as PID 1
    assert container["args"] == ["run"]


@pytest.mark.parametrize("env", ENV_NAMES)
def test_grace_period_covers_the_drain(renders: Renders, env: str) -> None:
    objs = renders.get("helm3", env)
    values = _values(env)
    worker = values["worker"]
    assert isinstance(worker, dict)
    grace = float(_container_env(objs)["PREVIEW_SHUTDOWN_GRACE_SECONDS"])
    assert grace == worker["shutdownGraceSeconds"]
    period = workload(objs)["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    margin = values["terminationGraceMarginSeconds"]
    assert isinstance(margin, int)
    assert period == math.ceil(grace) + margin
    assert period >= grace + 5


@pytest.mark.parametrize(
    ("grace", "margin", "expected"), [("25", "15", 40), ("0.5", "5", 6), ("90", "30", 120)]
)
def test_grace_period_derivation(helm3: str, grace: str, margin: str, expected: int) -> None:
    objs = render(
        helm3,
        ENVS["default"],
        [
            "--set-json",
            f"worker.shutdownGraceSeconds={grace}",
            "--set-json",
            f"terminationGraceMarginSeconds={margin}",
        ],
    )
    assert workload(objs)["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] == expected
    assert _container_env(objs)["PREVIEW_SHUTDOWN_GRACE_SECONDS"] == grace


@pytest.mark.parametrize("env", ENV_NAMES)
def test_pod_security(renders: Renders, env: str) -> None:
    objs = renders.get("helm3", env)
    pod = workload(objs)["spec"]["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False
    psc = pod["securityContext"]
    assert psc["runAsNonRoot"] is True
    assert psc["runAsUser"] >= 10001 and psc["runAsGroup"] >= 10001
    assert psc["seccompProfile"] == {"type": "RuntimeDefault"}
    for container in [
        *pod["containers"],
        *[c for h in hooks(objs) if h["kind"] == "Pod" for c in h["spec"]["containers"]],
    ]:
        csc = container["securityContext"]
        assert csc["readOnlyRootFilesystem"] is True
        assert csc["allowPrivilegeEscalation"] is False
        assert csc["capabilities"] == {"drop": ["ALL"]}
        assert container["resources"]["requests"] and container["resources"]["limits"]
    mounts = {m["mountPath"]: m["name"] for m in pod["containers"][0]["volumeMounts"]}
    assert mounts == {"/tmp": "tmp", "/data": "data"}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert "emptyDir" in volumes["tmp"]
    assert _container_env(objs)["DATA_DIR"] == "/data"
    for sa in by_kind(objs, "ServiceAccount"):
        assert sa["automountServiceAccountToken"] is False


def test_data_dir_claim_choices(helm3: str, renders: Renders) -> None:
    created = renders.get("helm3", "staging")
    claim = one(created, "PersistentVolumeClaim")
    vols = {v["name"]: v for v in workload(created)["spec"]["template"]["spec"]["volumes"]}
    assert vols["data"]["persistentVolumeClaim"]["claimName"] == claim["metadata"]["name"]
    existing = renders.get("helm3", "production")
    assert not by_kind(existing, "PersistentVolumeClaim")
    vols = {v["name"]: v for v in workload(existing)["spec"]["template"]["spec"]["volumes"]}
    assert vols["data"]["persistentVolumeClaim"]["claimName"] == "preview-worker-previews"
    scratch = renders.get("helm3", "keda")
    assert not by_kind(scratch, "PersistentVolumeClaim")
    vols = {v["name"]: v for v in workload(scratch)["spec"]["template"]["spec"]["volumes"]}
    assert "emptyDir" in vols["data"]


@pytest.mark.parametrize("env", ENV_NAMES)
def test_config_map_holds_exactly_the_non_secret_settings(renders: Renders, env: str) -> None:
    objs = renders.get("helm3", env)
    data = _container_env(objs)
    known = {v.name: v for v in ENV_VARS}
    unknown = set(data) - set(known)
    assert not unknown, f"ConfigMap keys the worker does not read: {unknown}"
    secret_names = {v.name for v in ENV_VARS if v.secret}
    assert not secret_names & set(data), "a secret setting landed in the ConfigMap"
    from_pod = {"PREVIEW_WORKER_ID"}
    missing = set(known) - set(data) - secret_names - from_pod
    assert not missing, f"settings the chart does not set: {missing}"
    for name, raw in data.items():
        known[name].parse(raw)  # every value is one the worker accepts
    deploy = workload(objs)
    annotations = deploy["spec"]["template"]["metadata"]["annotations"]
    assert re.fullmatch(r"[0-9a-f]{64}", annotations["checksum/config"])


def test_checksum_changes_with_the_config(helm3: str, renders: Renders) -> None:
    before = workload(renders.get("helm3", "default"))
    after = workload(render(helm3, ENVS["default"], ["--set", "worker.concurrency=7"]))
    key = "checksum/config"
    assert (
        before["spec"]["template"]["metadata"]["annotations"][key]
        != after["spec"]["template"]["metadata"]["annotations"][key]
    )


def _redis_env(objs: list[Obj]) -> Obj:
    env = {e["name"]: e for e in _container(objs)["env"]}
    return dict(env["REDIS_URL"]["valueFrom"]["secretKeyRef"])


def test_secret_created_only_without_existing_secret(helm3: str) -> None:
    url = "redis://:Sup3r-Secret-pw@redis.internal:6379/0"
    objs = render(helm3, ENVS["default"], ["--set", f"redis.url={url}"])
    secret = one(objs, "Secret")
    ref = _redis_env(objs)
    assert ref["name"] == secret["metadata"]["name"]
    assert base64.b64decode(secret["data"][ref["key"]]).decode() == url
    others = [o for o in objs if o is not secret]
    text = yaml.safe_dump_all(others)
    b64 = base64.b64encode(url.encode()).decode()
    for leak in ("Sup3r-Secret-pw", url, b64):
        assert leak not in text, "the Redis URL leaked outside the Secret"
    assert "Sup3r-Secret-pw" not in json.dumps(secret["metadata"])

    with_existing = render(
        helm3,
        ENVS["default"],
        [
            "--set",
            f"redis.url={url}",
            "--set",
            "redis.existingSecret=team-redis",
            "--set",
            "redis.secretKey=url",
        ],
    )
    assert not by_kind(with_existing, "Secret")
    assert _redis_env(with_existing) == {"name": "team-redis", "key": "url"}
    assert "Sup3r-Secret-pw" not in yaml.safe_dump_all(with_existing)


@pytest.mark.parametrize("env", ENV_NAMES)
def test_no_secret_outside_secrets(renders: Renders, env: str) -> None:
    for obj in renders.get("helm3", env):
        if obj["kind"] == "Secret":
            continue
        text = json.dumps(obj)
        assert not re.search(r"rediss?://[^\"]*@", text), f"{obj['kind']} holds a Redis URL"


@pytest.mark.parametrize("env", ENV_NAMES)
def test_image_is_pinned(renders: Renders, env: str) -> None:
    objs = renders.get("helm3", env)
    images = [_container(objs)["image"]] + [
        c["image"] for h in hooks(objs) if h["kind"] == "Pod" for c in h["spec"]["containers"]
    ]
    for image in images:
        assert image.startswith("ghcr.io/preview-worker/preview-worker")
        assert re.search(r"(:[0-9][A-Za-z0-9_.-]*|@sha256:[0-9a-f]{64})$", image), image
        assert not image.endswith(":latest")


def test_digest_wins_over_tag(renders: Renders) -> None:
    image = _container(renders.get("helm3", "keda"))["image"]
    assert image == (
        "ghcr.io/preview-worker/preview-worker@sha256:"
        "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
    )


def test_network_policy(renders: Renders) -> None:
    objs = renders.get("helm3", "keda")
    np = next(
        o for o in by_kind(objs, "NetworkPolicy") if not o["metadata"]["name"].endswith("-test")
    )
    assert np["spec"]["policyTypes"] == ["Ingress", "Egress"]
    ingress = np["spec"]["ingress"]
    for rule in ingress:
        assert rule["ports"] == [{"port": "http", "protocol": "TCP"}]
    monitoring = ingress[0]["from"][0]
    assert monitoring["namespaceSelector"]["matchLabels"] == {
        "kubernetes.io/metadata.name": "monitoring"
    }
    egress = np["spec"]["egress"]
    ports = [sorted((p["port"], p["protocol"]) for p in rule["ports"]) for rule in egress]
    assert ports == [
        [(53, "TCP"), (53, "UDP")],
        [(6379, "TCP")],
        [(443, "TCP"), (8443, "TCP")],
    ]
    redis_peer = {"podSelector": {"matchLabels": {"app.kubernetes.io/name": "redis"}}}
    assert egress[1]["to"] == [redis_peer]
    assert egress[2]["to"] == [{"ipBlock": {"cidr": "203.0.113.0/24"}}]
    # No asset hosts configured: no asset egress at all.
    prod = next(
        o
        for o in by_kind(renders.get("helm3", "production"), "NetworkPolicy")
        if not o["metadata"]["name"].endswith("-test")
    )
    assert len(prod["spec"]["egress"]) == 2


def test_helm_test_pod_checks_the_service(renders: Renders) -> None:
    objs = renders.get("helm3", "production")
    pods = [h for h in hooks(objs) if h["kind"] == "Pod"]
    assert len(pods) == 1
    pod = pods[0]
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    script = "\n".join(pod["spec"]["containers"][0]["command"])
    service = one(objs, "Service")
    url = f"http://{service['metadata']['name']}.preview.svc:{service['spec']['ports'][0]['port']}"
    assert url in script and "/healthz" in script and "/metrics" in script
    assert pod["spec"]["restartPolicy"] == "Never"
    # The worker's NetworkPolicy lets the test pod in; the test pod's own policy lets it out.
    np = next(
        o
        for o in by_kind(objs, "NetworkPolicy")
        if o["metadata"]["name"] == service["metadata"]["name"]
    )
    test_labels = pod["metadata"]["labels"]
    assert any(
        _matches(peer.get("podSelector", {}).get("matchLabels", {"-": "-"}), test_labels)
        for rule in np["spec"]["ingress"]
        for peer in rule["from"]
    )


def _rule_file() -> Any:
    data = yaml.safe_load((CHART / "files" / "prometheus-rules.yaml").read_text())
    assert isinstance(data, dict)
    return data


def test_prometheus_rule_embeds_the_rule_file_with_thresholds_from_values(helm3: str) -> None:
    objs = render(
        helm3,
        ENVS["production"],
        [
            "--set-json",
            "prometheusRule.thresholds.failureRatio=0.2",
            "--set-json",
            "prometheusRule.thresholds.backlog=2500000",
            "--set",
            "prometheusRule.additionalLabels.team=previews",
        ],
    )
    rule = one(objs, "PrometheusRule")
    assert rule["metadata"]["labels"]["team"] == "previews"
    assert rule["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    groups = {g["name"]: g for g in rule["spec"]["groups"]}
    source = {g["name"]: g for g in _rule_file()["groups"]}
    assert list(groups) == list(source)
    for name, group in source.items():
        if name != "preview-worker.thresholds":
            assert groups[name] == group, f"group {name} must be kept verbatim"
    thresholds = {r["record"]: r["expr"] for r in groups["preview-worker.thresholds"]["rules"]}
    assert thresholds == {
        "preview_worker:threshold:failure_ratio": "vector(0.2)",
        "preview_worker:threshold:backlog": "vector(2500000)",
        "preview_worker:threshold:p95_duration_seconds": "vector(120)",
        "preview_worker:threshold:canary_failure_ratio_delta": "vector(0.05)",
    }
    annotations = [
        a
        for g in rule["spec"]["groups"]
        for r in g["rules"]
        for a in dict(r.get("annotations", {})).values()
    ]
    source_annotations = [
        a
        for g in _rule_file()["groups"]
        for r in g["rules"]
        for a in dict(r.get("annotations", {})).values()
    ]
    assert sorted(annotations) == sorted(source_annotations)
    assert any("{{ $labels." in a for a in annotations) or not source_annotations


def test_default_thresholds_match_the_rule_file(renders: Renders) -> None:
    rule = one(renders.get("helm3", "production"), "PrometheusRule")
    rendered = next(g for g in rule["spec"]["groups"] if g["name"] == "preview-worker.thresholds")
    source = next(g for g in _rule_file()["groups"] if g["name"] == "preview-worker.thresholds")
    assert {r["record"]: r["expr"] for r in rendered["rules"]} == {
        r["record"]: r["expr"] for r in source["rules"]
    }


def test_dashboard_config_map(helm3: str, renders: Renders) -> None:
    cm = next(
        o
        for o in by_kind(renders.get("helm3", "production"), "ConfigMap")
        if o["metadata"]["name"].endswith("-dashboard")
    )
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert cm["metadata"]["annotations"] == {"grafana_folder": "previews"}
    embedded = json.loads(cm["data"]["preview-worker.json"])
    assert embedded == json.loads((CHART / "files" / "dashboard.json").read_text())
    relabelled = render(
        helm3,
        ENVS["production"],
        ["--set", "dashboard.labelKey=dashboards", "--set", "dashboard.labelValue=x"],
    )
    cm = next(
        o for o in by_kind(relabelled, "ConfigMap") if o["metadata"]["name"].endswith("-dashboard")
    )
    assert cm["metadata"]["labels"]["dashboards"] == "x"
    assert "grafana_dashboard" not in cm["metadata"]["labels"]


def test_monitoring_objects_are_gated_by_values_not_capabilities(helm3: str) -> None:
    # No --api-versions given: a Capabilities gate would hide them here.
    objs = render(
        helm3,
        ENVS["default"],
        ["--set", "serviceMonitor.enabled=true", "--set", "prometheusRule.enabled=true"],
    )
    one(objs, "ServiceMonitor")
    one(objs, "PrometheusRule")
    assert not by_kind(render(helm3, ENVS["default"]), "ServiceMonitor")


def test_canary_values_layer_equals_generated_ci_file(helm3: str, renders: Renders) -> None:
    env = ENVS["canary"]
    from tests.chart.helm import Env

    via_ci = render(
        helm3, Env("canary-ci", env.release, env.namespace, (CHART / "ci" / "canary-values.yaml",))
    )
    assert via_ci == renders.get("helm3", "canary")


def test_environment_files_exist() -> None:
    for name in ("staging", "production", "canary"):
        assert (VALUES / f"{name}.yaml").is_file()
    assert parse((VALUES / "canary.yaml").read_text())[0]["track"] == "canary"


@pytest.mark.parametrize("env", ["staging", "production", "canary", "keda"])
def test_notes_render_without_secrets(helm4: str, env: str) -> None:
    # Helm 4 renders NOTES.txt of a client-side dry run without a cluster (Helm 3 wants one).
    e = ENVS[env]
    args = template_args(e)
    args[0] = "install"
    result = helm(helm4, *args, "--dry-run=client", "--kubeconfig", "/nonexistent")
    assert result.returncode == 0, result.stderr
    notes = result.stdout.split("\nNOTES:\n", 1)[1]
    assert f"release {e.release} in namespace {e.namespace}" in notes
    assert f"helm test {e.release} -n {e.namespace}" in notes
    assert "terminationGracePeriodSeconds 40" in notes
    # The Secret holds it base64-encoded; in clear text it appears nowhere.
    assert "ci-only-password" not in result.stdout
