"""``preview-worker deploy``: set-image edits, plans, and verify against recording stand-ins.

No cluster exists here: ``helm`` and ``kubectl`` are small Python programs put first on PATH.
They append every call to a JSON-lines file and answer like the real tools would for one
scenario; the stand-in ``kubectl port-forward`` serves the health endpoints over real HTTP.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import sys
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

from app import deploy

DIGEST = "sha256:" + "0123456789abcdef" * 4

VALUES = """\
# Staging values for preview-worker.
# Keep the comments: operators read them.
replicaCount: 2

image:
  # Where the image lives (set by `preview-worker deploy set-image`).
  repository: ghcr.io/acme/preview-worker   # registry/path
  tag: "1.2.2"      # a version, never latest
  digest: ''
  pullPolicy: IfNotPresent

resources:
    limits:
        cpu: "1"
        memory: 1Gi
extraArgs:
    - --concurrency
    - "4"
"""


def _set(text: str, image: str) -> str:
    return deploy.set_image_text(text, deploy.parse_image(image))


def _changed_lines(before: str, after: str) -> list[tuple[str, str]]:
    old, new = before.splitlines(), after.splitlines()
    assert len(old) == len(new)
    return [(a, b) for a, b in zip(old, new, strict=True) if a != b]


# --------------------------------------------------------------------------- image references


@pytest.mark.parametrize(
    ("raw", "repository", "tag", "digest"),
    [
        ("ghcr.io/acme/preview-worker:1.2.3", "ghcr.io/acme/preview-worker", "1.2.3", ""),
        ("localhost:5000/pw:v1_rc.2", "localhost:5000/pw", "v1_rc.2", ""),
        ("preview-worker:1", "preview-worker", "1", ""),
        (f"ghcr.io/acme/pw@{DIGEST}", "ghcr.io/acme/pw", "", DIGEST),
        (f"ghcr.io/acme/pw:1.2.3@{DIGEST}", "ghcr.io/acme/pw", "1.2.3", DIGEST),
        ("registry.example.com:443/a/b/c:2024.06", "registry.example.com:443/a/b/c", "2024.06", ""),
    ],
)
def test_parse_image_accepts(raw: str, repository: str, tag: str, digest: str) -> None:
    ref = deploy.parse_image(raw)
    assert (ref.repository, ref.tag, ref.digest) == (repository, tag, digest)
    assert str(ref) == raw


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("ghcr.io/acme/pw:latest", "latest"),
        ("ghcr.io/acme/pw:LATEST", "latest"),
        ("ghcr.io/acme/pw", "neither a tag nor a digest"),
        ("ghcr.io/Acme/pw:1", "not a valid name"),
        ("ghcr.io/acme/pw:-1", "tag"),
        ("ghcr.io/acme/pw:1 2", "whitespace"),
        ("ghcr.io/acme/pw@sha256:abc", "digest"),
        ("ghcr.io/acme//pw:1", "not a valid name"),
        ("", "empty"),
        ("ghcr.io/acme/pw:" + "x" * 129, "tag"),
    ],
)
def test_parse_image_refuses(raw: str, reason: str) -> None:
    with pytest.raises(deploy.ImageRefError, match=reason):
        deploy.parse_image(raw)


# --------------------------------------------------------------------------- set-image


def test_set_image_changes_only_the_values() -> None:
    after = _set(VALUES, "ghcr.io/acme/preview-worker:1.10.0")
    assert _changed_lines(VALUES, after) == [
        (
            '  tag: "1.2.2"      # a version, never latest',
            '  tag: "1.10.0"     # a version, never latest',
        ),
    ]


def test_set_image_with_digest_keeps_comment_column_and_quote_style() -> None:
    after = _set(VALUES, f"registry.example.com/acme/pw:1.3.0@{DIGEST}")
    assert _changed_lines(VALUES, after) == [
        (
            "  repository: ghcr.io/acme/preview-worker   # registry/path",
            "  repository: registry.example.com/acme/pw  # registry/path",
        ),
        (
            '  tag: "1.2.2"      # a version, never latest',
            '  tag: "1.3.0"      # a version, never latest',
        ),
        ("  digest: ''", f"  digest: '{DIGEST}'"),
    ]


def test_tag_only_clears_a_stale_digest_and_digest_only_clears_the_tag() -> None:
    pinned = _set(VALUES, f"ghcr.io/acme/preview-worker@{DIGEST}")
    data = YAML(typ="safe").load(pinned)
    assert data["image"] == {
        "repository": "ghcr.io/acme/preview-worker",
        "tag": "",
        "digest": DIGEST,
        "pullPolicy": "IfNotPresent",
    }
    retagged = YAML(typ="safe").load(_set(pinned, "ghcr.io/acme/preview-worker:1.4.0"))
    assert retagged["image"]["tag"] == "1.4.0"
    assert retagged["image"]["digest"] == ""


def test_plain_values_that_yaml_would_retype_get_quoted() -> None:
    text = "image:\n  repository: a/b\n  tag: v1\n  digest: null\n"
    after = _set(text, "a/b:1.10")
    assert after == 'image:\n  repository: a/b\n  tag: "1.10"\n  digest: ""\n'
    assert YAML(typ="safe").load(after)["image"]["tag"] == "1.10"


def test_empty_values_and_missing_keys_are_filled_in_the_mapping_indentation() -> None:
    text = "# top\nimage:\n    pullPolicy: Always   # keep\n    tag:\nother: 1\n"
    after = _set(text, "ghcr.io/acme/pw:2.0.0")
    assert after == (
        "# top\nimage:\n"
        '    repository: ghcr.io/acme/pw\n    digest: ""\n'
        '    pullPolicy: Always   # keep\n    tag: "2.0.0"\nother: 1\n'
    )


def test_missing_image_section_is_appended() -> None:
    after = _set("replicaCount: 1  # one", "ghcr.io/acme/pw:2.0.0")
    assert after == (
        "replicaCount: 1  # one\n"
        'image:\n  repository: ghcr.io/acme/pw\n  tag: 2.0.0\n  digest: ""\n'
    )


def test_crlf_line_endings_and_flow_mappings_are_kept() -> None:
    text = "a: 1\r\nimage: {repository: x/y, tag: '1', digest: ''}  # flow\r\n"
    after = _set(text, "x/y:2")
    assert after == "a: 1\r\nimage: {repository: x/y, tag: '2', digest: ''}  # flow\r\n"


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("image: [1, 2]\n", "must be a mapping"),
        ("- a\n- b\n", "mapping at the top level"),
        ("image:\n  tag: &t 1\n  repository: *t\n", "anchor, alias"),
        ("image:\n  tag: |\n    1\n", "block scalar"),
        ("image: {pullPolicy: Always}\n", "flow mapping"),
        ("image:\n  tag: [\n", "not valid YAML"),
    ],
)
def test_set_image_refuses_what_it_cannot_edit_safely(text: str, reason: str) -> None:
    with pytest.raises(deploy.ValuesFileError, match=reason):
        _set(text, "a/b:1")


def test_cli_set_image_writes_file_and_reports(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    values = tmp_path / "staging.yaml"
    values.write_text(VALUES)
    values.chmod(0o640)
    assert deploy.main(["set-image", str(values), "ghcr.io/acme/preview-worker:1.3.0"]) == 0
    out = capsys.readouterr().out
    assert "ghcr.io/acme/preview-worker:1.2.2 -> ghcr.io/acme/preview-worker:1.3.0" in out
    assert _changed_lines(VALUES, values.read_text()) == [
        (
            '  tag: "1.2.2"      # a version, never latest',
            '  tag: "1.3.0"      # a version, never latest',
        ),
    ]
    assert not list(tmp_path.glob(".*.tmp"))
    assert values.stat().st_mode & 0o777 == 0o640
    # Idempotent: a second run says so and leaves the file alone.
    assert deploy.main(["set-image", str(values), "ghcr.io/acme/preview-worker:1.3.0"]) == 0
    assert "already" in capsys.readouterr().out


def test_cli_set_image_dry_run_prints_diff_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    values = tmp_path / "canary.yaml"
    values.write_text(VALUES)
    assert (
        deploy.main(["set-image", "--dry-run", str(values), "ghcr.io/acme/preview-worker:9"]) == 0
    )
    out = capsys.readouterr().out
    assert '-  tag: "1.2.2"' in out
    assert '+  tag: "9"' in out
    assert values.read_text() == VALUES


@pytest.mark.parametrize(
    ("argv", "code", "message"),
    [
        (["ghcr.io/acme/pw:latest"], 2, "refusing the 'latest' tag"),
        (["ghcr.io/acme/pw"], 2, "neither a tag nor a digest"),
        (["not a ref"], 2, "whitespace"),
    ],
)
def test_cli_set_image_bad_reference(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], code: int, message: str
) -> None:
    values = tmp_path / "v.yaml"
    values.write_text(VALUES)
    assert deploy.main(["set-image", str(values), *argv]) == code
    err = capsys.readouterr().err
    assert err.startswith("error: ")
    assert message in err
    assert "Traceback" not in err
    assert values.read_text() == VALUES


def test_cli_set_image_unreadable_and_invalid_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert deploy.main(["set-image", str(tmp_path / "missing.yaml"), "a/b:1"]) == 3
    assert "cannot read" in capsys.readouterr().err
    bad = tmp_path / "bad.yaml"
    bad.write_text("image: [\n")
    assert deploy.main(["set-image", str(bad), "a/b:1"]) == 2
    assert "not valid YAML" in capsys.readouterr().err
    binary = tmp_path / "bin.yaml"
    binary.write_bytes(b"\xff\xfe\x00")
    assert deploy.main(["set-image", str(binary), "a/b:1"]) == 2
    assert "not UTF-8" in capsys.readouterr().err


# --------------------------------------------------------------------------- plan


def _plan(capsys: pytest.CaptureFixture[str], *argv: str) -> dict[str, Any]:
    assert deploy.main(["plan", *argv, "--json"]) == 0
    doc: dict[str, Any] = json.loads(capsys.readouterr().out)
    return doc


def test_plan_staging(capsys: pytest.CaptureFixture[str]) -> None:
    doc = _plan(capsys, "staging")
    commands = [s["command"] for s in doc["steps"]]
    assert commands == [
        "helm lint charts/preview-worker --strict -f values/staging.yaml",
        "helm upgrade --install preview-worker charts/preview-worker -n preview-staging "
        "-f values/staging.yaml --wait --timeout 5m --history-max 10",
        "helm test preview-worker -n preview-staging",
        "preview-worker deploy verify --release preview-worker --namespace preview-staging",
        "helm rollback preview-worker -n preview-staging --wait",
    ]


def test_plan_canary_layers_production_values(capsys: pytest.CaptureFixture[str]) -> None:
    doc = _plan(capsys, "canary", "--image", f"ghcr.io/acme/pw:1.3.0@{DIGEST}")
    commands = [s["command"] for s in doc["steps"]]
    assert commands[:2] == [
        f"preview-worker deploy set-image values/canary.yaml ghcr.io/acme/pw:1.3.0@{DIGEST}",
        f"git commit -m 'rollout: ghcr.io/acme/pw:1.3.0@{DIGEST} to canary' values/canary.yaml",
    ]
    assert commands[3] == (
        "helm upgrade --install preview-worker-canary charts/preview-worker -n preview "
        "-f values/production.yaml -f values/canary.yaml --wait --timeout 5m --history-max 10"
    )
    assert commands[-2:] == [
        "helm uninstall preview-worker-canary -n preview --wait",
        "helm rollback preview-worker-canary -n preview --wait",
    ]


def test_plan_production_promotes_and_removes_the_canary(
    capsys: pytest.CaptureFixture[str],
) -> None:
    doc = _plan(capsys, "production", "--image", "ghcr.io/acme/pw:1.3.0")
    commands = [s["command"] for s in doc["steps"]]
    assert commands == [
        "preview-worker deploy set-image values/production.yaml ghcr.io/acme/pw:1.3.0",
        "git commit -m 'rollout: promote ghcr.io/acme/pw:1.3.0 to production' "
        "values/production.yaml",
        "helm lint charts/preview-worker --strict -f values/production.yaml",
        "helm upgrade --install preview-worker charts/preview-worker -n preview "
        "-f values/production.yaml --wait --timeout 10m --history-max 10",
        "helm test preview-worker -n preview",
        "preview-worker deploy verify --release preview-worker --namespace preview",
        "helm uninstall preview-worker-canary -n preview --wait",
        "helm rollback preview-worker -n preview --wait --timeout 10m",
    ]


def test_plan_timeout_override(capsys: pytest.CaptureFixture[str]) -> None:
    doc = _plan(capsys, "staging", "--timeout", "1h30m")
    commands = [s["command"] for s in doc["steps"]]
    assert "--timeout 1h30m --history-max 10" in commands[1]
    assert commands[-1] == "helm rollback preview-worker -n preview-staging --wait --timeout 1h30m"


def _rollout_commands() -> list[list[str]]:
    """docs/rollout.md's commands as argv: sh block lines (continuations joined) and inline
    helm/preview-worker code spans."""
    text = (Path(__file__).resolve().parent.parent / "docs/rollout.md").read_text()
    commands = []
    for block in re.findall(r"```sh\n(.*?)```", text, re.DOTALL):
        joined = re.sub(r"\\\n\s*", " ", block)
        for line in joined.splitlines():
            line = line.split("  #", 1)[0].strip()
            if line and not line.startswith("#"):
                commands.append(shlex.split(line, comments=True))
    for span in re.findall(r"`((?:helm|preview-worker) [^`]+)`", text):
        commands.append(shlex.split(span))
    return commands


@pytest.mark.parametrize("env", sorted(deploy.ENVIRONMENTS))
def test_plan_matches_the_rollout_guide(env: str) -> None:
    documented = _rollout_commands()
    assert documented, "docs/rollout.md has no sh blocks"
    plan = deploy.build_plan(env)
    for step in plan.steps:
        assert list(step.argv) in documented, f"not in docs/rollout.md: {shlex.join(step.argv)}"
    image = deploy.build_plan(env, image=deploy.parse_image("ghcr.io/x/y:1")).steps[0]
    set_image = [*image.argv[:-1], "$IMAGE"]
    assert set_image in documented


def test_plan_text_output_is_runnable_lines(capsys: pytest.CaptureFixture[str]) -> None:
    assert deploy.main(["plan", "staging"]) == 0
    out = capsys.readouterr().out
    commands = [ln for ln in out.splitlines() if ln and not ln.startswith("#")]
    assert [shlex.split(c)[0] for c in commands] == [
        "helm",
        "helm",
        "helm",
        "preview-worker",
        "helm",
    ]
    assert out.startswith("# staging: release preview-worker in namespace preview-staging")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["plan", "staging", "--image", "a/b:latest"], "latest"),
        (["plan", "staging", "--timeout", "soon"], "duration"),
    ],
)
def test_plan_bad_input(capsys: pytest.CaptureFixture[str], argv: list[str], message: str) -> None:
    assert deploy.main(argv) == 2
    assert message in capsys.readouterr().err


def test_plan_unknown_environment_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        deploy.main(["plan", "prod"])
    assert exc.value.code == 2
    assert "invalid choice: 'prod'" in capsys.readouterr().err


# --------------------------------------------------------------------------- verify

STUB = r"""
import http.server, json, os, signal, sys, threading

scenario = os.environ["STUB_SCENARIO"]
tool = os.path.basename(sys.argv[0])
args = sys.argv[1:]
if tool == "kubectl" and args[:1] == ["--context"]:
    args = args[2:]
with open(os.environ["STUB_LOG"], "a", encoding="utf-8") as log:
    log.write(json.dumps([tool, *sys.argv[1:]]) + "\n")

def fail(message, code=1):
    sys.stderr.write(message + "\n")
    sys.exit(code)

if tool == "helm":
    if args[:1] != ["status"]:
        fail("stub helm: unexpected call")
    if scenario == "no-release":
        fail("Error: release: not found")
    status = "failed" if scenario == "failed-release" else "deployed"
    print(json.dumps({"name": args[1], "version": 7, "info": {"status": status},
                      "chart": {"metadata": {"name": "preview-worker", "version": "0.1.0",
                                             "appVersion": "0.1.0"}}}))
    sys.exit(0)

if args[:2] == ["get", "deployments"]:
    if scenario == "no-deployment":
        sys.exit(0)
    release = next(a.split("=", 1)[1] for a in args if a.startswith("app.kubernetes.io/instance="))
    print(f"deployment.apps/{release}")
    sys.exit(0)
if args[:2] == ["rollout", "status"]:
    if scenario == "rollout-stuck":
        fail("error: timed out waiting for the condition")
    print(f'deployment "{args[2].split("/")[-1]}" successfully rolled out')
    sys.exit(0)
if args[:1] == ["port-forward"]:
    if scenario == "port-forward-fails":
        fail("error: unable to forward port because pod is not running. Current status=Pending")
    local = int(args[2].split(":")[0])
    ready = 503 if scenario == "not-ready" else 200
    health = {"status": "degraded" if scenario == "not-ready" else "ok", "track": "stable",
              "version": "0.1.0"}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            if self.path == "/readyz":
                code, body = ready, b"ready" if ready == 200 else b"draining"
            elif self.path == "/api/preview/worker/health":
                code, body = ready, json.dumps(health).encode()
            else:
                code, body = 404, b"not found"
            self.send_response(code)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *a):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", local), Handler)
    signal.signal(signal.SIGTERM, lambda *a: threading.Thread(target=server.shutdown).start())
    print(f"Forwarding from 127.0.0.1:{local} -> 3000", flush=True)
    server.serve_forever()
    with open(os.environ["STUB_LOG"], "a", encoding="utf-8") as log:
        log.write(json.dumps(["kubectl-port-forward-stopped"]) + "\n")
    sys.exit(0)
fail("stub kubectl: unexpected call " + " ".join(args))
"""


@pytest.fixture
def stubs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    bindir = tmp_path / "bin"
    bindir.mkdir()
    for tool in ("helm", "kubectl"):
        path = bindir / tool
        path.write_text(f"#!{sys.executable}\n{STUB}")
        path.chmod(0o755)
    log = tmp_path / "calls.jsonl"
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("STUB_LOG", str(log))
    return log


def _calls(log: Path) -> list[list[str]]:
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def _verify(monkeypatch: pytest.MonkeyPatch, scenario: str, *extra: str) -> int:
    monkeypatch.setenv("STUB_SCENARIO", scenario)
    return deploy.main(
        [
            "verify",
            "--release",
            "preview-worker",
            "--namespace",
            "preview",
            "--timeout",
            "20",
            *extra,
        ]
    )


def test_verify_healthy_release(
    stubs: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _verify(monkeypatch, "healthy") == 0
    out = capsys.readouterr().out
    assert "PASS  helm status: deployed (revision 7, chart preview-worker-0.1.0, app 0.1.0)" in out
    assert "PASS  rollout deployment.apps/preview-worker" in out
    assert "PASS  readyz: HTTP 200" in out
    assert "PASS  health: HTTP 200, status=ok, version=0.1.0, track=stable" in out
    assert out.rstrip().endswith("verdict: preview-worker in preview is healthy")
    calls = _calls(stubs)
    assert calls[0] == [
        "helm",
        "status",
        "preview-worker",
        "--namespace",
        "preview",
        "--output",
        "json",
    ]
    assert calls[1] == [
        "kubectl",
        "get",
        "deployments",
        "--namespace",
        "preview",
        "--selector",
        "app.kubernetes.io/instance=preview-worker",
        "--output",
        "name",
    ]
    assert calls[2] == [
        "kubectl",
        "rollout",
        "status",
        "deployment.apps/preview-worker",
        "--namespace",
        "preview",
        "--timeout=20s",
    ]
    forward = calls[3]
    assert forward[:3] == ["kubectl", "port-forward", "deployment.apps/preview-worker"]
    assert forward[3].endswith(":http")
    assert forward[4:] == ["--namespace", "preview", "--address", "127.0.0.1"]
    # The port-forward was stopped cleanly (SIGTERM), not left behind.
    assert calls[-1] == ["kubectl-port-forward-stopped"]


@pytest.mark.parametrize(
    ("scenario", "failure"),
    [
        ("no-release", "FAIL  helm status: Error: release: not found"),
        ("failed-release", "FAIL  helm status: status is 'failed' (revision 7"),
        ("no-deployment", "FAIL  find deployments: no Deployment labelled"),
        ("rollout-stuck", "FAIL  rollout deployment.apps/preview-worker: error: timed out"),
        (
            "port-forward-fails",
            "FAIL  port-forward: kubectl port-forward exited with 1: error: unable",
        ),
        ("not-ready", "FAIL  readyz: HTTP 503"),
    ],
)
def test_verify_unhealthy_release_fails_with_a_reason(
    stubs: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    scenario: str,
    failure: str,
) -> None:
    assert _verify(monkeypatch, scenario) == 1
    out = capsys.readouterr().out
    assert failure in out
    assert "verdict: preview-worker in preview is NOT healthy" in out


def test_verify_json_with_explicit_deployment_and_context(
    stubs: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code = _verify(monkeypatch, "not-ready", "--deployment", "pw", "--context", "prod", "--json")
    assert code == 1
    doc = json.loads(capsys.readouterr().out)
    assert doc["healthy"] is False
    assert [(c["name"], c["ok"]) for c in doc["checks"]] == [
        ("helm status", True),
        ("rollout deployment/pw", True),
        ("readyz", False),
        ("health", False),
    ]
    calls = _calls(stubs)
    assert calls[0][-2:] == ["--kube-context", "prod"]
    assert all(c[1:3] == ["--context", "prod"] for c in calls[1:] if c[0] == "kubectl")
    assert not any(c[1:2] == ["get"] for c in calls)


def test_verify_reports_missing_tools(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    assert _verify(monkeypatch, "healthy") == 3
    assert "'helm' was not found on PATH" in capsys.readouterr().err


@pytest.mark.parametrize("bad", ["Preview", "a_b", "-x", "x" * 64])
def test_verify_rejects_bad_names(bad: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        deploy.main(["verify", f"--release={bad}", "--namespace", "preview"])
    assert exc.value.code == 2
    assert "not a valid Kubernetes name" in capsys.readouterr().err


def test_add_commands_wires_into_a_parent_cli() -> None:
    import argparse

    parser = argparse.ArgumentParser(prog="preview-worker")
    add = parser.add_subparsers(dest="command", required=True)
    deploy.add_commands(add)
    args = parser.parse_args(["deploy", "plan", "canary"])
    assert args.func is deploy.cmd_plan
    args = parser.parse_args(["deploy", "set-image", "v.yaml", "a/b:1"])
    assert args.func is deploy.cmd_set_image
    args = parser.parse_args(["deploy", "verify", "--release", "r", "-n", "ns"])
    assert args.func is deploy.cmd_verify


@pytest.mark.parametrize("env", ["staging", "canary", "production"])
def test_set_image_on_the_real_values_files(env: str, tmp_path: Path) -> None:
    source = Path(__file__).resolve().parent.parent / "values" / f"{env}.yaml"
    values = tmp_path / source.name
    values.write_bytes(source.read_bytes())
    assert deploy.main(["set-image", str(values), f"ghcr.io/acme/pw:9.9.9@{DIGEST}"]) == 0
    before, after = source.read_text(), values.read_text()
    changed = _changed_lines(before, after)
    assert changed
    assert all(old.strip().split(":")[0] in {"repository", "tag", "digest"} for old, _ in changed)
    image = YAML(typ="safe").load(after)["image"]
    assert (image["repository"], image["tag"], image["digest"]) == (
        "ghcr.io/acme/pw",
        "9.9.9",
        DIGEST,
    )
