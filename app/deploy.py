"""``preview-worker deploy``: move an image through the values files, plan and verify rollouts.

Replaces the prototype's shell/PowerShell script pairs with one cross-platform command:

* ``set-image VALUES_FILE IMAGE`` edits ``image.repository``, ``image.tag`` and ``image.digest``
  in place. Only the bytes of those three values change: comments, quoting, indentation, key
  order and line endings stay as they were (ruamel.yaml finds the values, the edit is textual,
  and the result is re-read to prove nothing else moved).
* ``plan ENV`` prints the exact helm commands of one environment: preflight, deploy, verify,
  rollback.
* ``verify --release R --namespace N`` runs ``helm status``, ``kubectl rollout status`` and reads
  ``/readyz`` and ``/api/preview/worker/health`` through ``kubectl port-forward``, then prints a
  verdict. Exit codes: 0 healthy, 1 not healthy, 2 bad input, 3 a tool or file is missing.

Only the standard library and ruamel.yaml; subprocesses get argument lists (no shell) so the
same code runs on Linux, macOS and Windows.
"""

from __future__ import annotations

import argparse
import io
import json
import re
import shlex
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_UNAVAILABLE = 3

# --------------------------------------------------------------------------- image references

# The grammar of github.com/distribution/reference (what docker and containerd accept).
_ALNUM = r"[a-z0-9]+"
_SEPARATOR = r"(?:[._]|__|-+)"
_COMPONENT = rf"{_ALNUM}(?:{_SEPARATOR}{_ALNUM})*"
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN = rf"(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|\[[0-9a-fA-F:.]+\])(?::[0-9]+)?"
_NAME = re.compile(rf"^(?:{_DOMAIN}/)?{_COMPONENT}(?:/{_COMPONENT})*$")
_TAG = re.compile(r"^[\w][\w.-]{0,127}$")
_DIGEST = re.compile(r"^(sha256:[0-9a-f]{64}|sha512:[0-9a-f]{128})$")


class ImageRefError(ValueError):
    """An image reference is malformed or not allowed (``latest``, no tag and no digest)."""


@dataclass(frozen=True)
class ImageRef:
    repository: str
    """Registry host (if any) and path, e.g. ``ghcr.io/acme/preview-worker``."""
    tag: str
    """Empty when the reference has only a digest."""
    digest: str
    """``sha256:<64 hex>`` or empty."""

    def __str__(self) -> str:
        text = self.repository
        if self.tag:
            text += f":{self.tag}"
        if self.digest:
            text += f"@{self.digest}"
        return text


def parse_image(raw: str) -> ImageRef:
    """Parse ``[registry/]path[:tag][@digest]``; refuse ``latest`` and untagged references."""
    text = raw.strip()
    if not text:
        raise ImageRefError("the image reference is empty")
    if any(ch.isspace() for ch in text):
        raise ImageRefError(f"{raw!r} contains whitespace")
    name, _, digest = text.partition("@")
    if "@" in text and not _DIGEST.match(digest):
        raise ImageRefError(
            f"{raw!r}: the digest must be sha256:<64 lowercase hex> (or sha512:<128 hex>)"
        )
    tag = ""
    slash = name.rfind("/")
    colon = name.rfind(":")
    if colon > slash:
        name, tag = name[:colon], name[colon + 1 :]
        if not _TAG.match(tag):
            raise ImageRefError(
                f"{raw!r}: tag {tag!r} must be 1-128 of letters, digits, '_', '.', '-' "
                "and must not start with '.' or '-'"
            )
    if not name or not _NAME.match(name) or len(name) > 255:
        raise ImageRefError(
            f"{raw!r}: repository {name!r} is not a valid name (lowercase path components "
            "separated by '/', optionally after a registry host[:port])"
        )
    if tag.lower() == "latest":
        raise ImageRefError(
            f"{raw!r}: refusing the 'latest' tag; use a version tag or a digest so every "
            "rollout and rollback names one exact image"
        )
    if not tag and not digest:
        raise ImageRefError(
            f"{raw!r} has neither a tag nor a digest (that means 'latest'); "
            "add :<version> or @sha256:<digest>"
        )
    return ImageRef(repository=name, tag=tag, digest=digest)


# --------------------------------------------------------------------------- values files


class ValuesFileError(Exception):
    """A values file cannot be edited safely; the message says why."""


_PLAIN_SAFE = re.compile(r"^[A-Za-z0-9_./@:+-]*$")


@dataclass
class _Edit:
    line: int
    start: int
    end: int
    text: str


def _yaml() -> YAML:
    yaml = YAML(typ="rt")
    yaml.preserve_quotes = True
    return yaml


def _load(text: str, what: str) -> Any:
    try:
        return _yaml().load(text)
    except YAMLError as exc:
        raise ValuesFileError(f"{what} is not valid YAML: {exc}") from None


def _render_scalar(value: str, old_token: str) -> str:
    """``value`` as a YAML scalar, in the quoting style of the token it replaces."""
    if old_token.startswith("'"):
        return "'" + value.replace("'", "''") + "'"
    if old_token.startswith('"') or value == "":
        return json.dumps(value)
    plain_ok = _PLAIN_SAFE.match(value) is not None and not value.startswith(("-", ":", "@"))
    if plain_ok:
        loaded = YAML(typ="safe").load(f"k: {value}\n")
        if isinstance(loaded, dict) and loaded.get("k") == value:
            return value
    return json.dumps(value)


def _scalar_end(line: str, start: int, flow: bool) -> int:
    """Index just past the scalar token that begins at ``start`` on ``line``."""
    if start >= len(line):
        return start
    quote = line[start]
    if quote == "'":
        i = start + 1
        while i < len(line):
            if line[i] == "'":
                if i + 1 < len(line) and line[i + 1] == "'":
                    i += 2
                    continue
                return i + 1
            i += 1
        raise ValuesFileError("a single-quoted value continues on the next line")
    if quote == '"':
        i = start + 1
        while i < len(line):
            if line[i] == "\\":
                i += 2
                continue
            if line[i] == '"':
                return i + 1
            i += 1
        raise ValuesFileError("a double-quoted value continues on the next line")
    if quote in "|>&*!":
        raise ValuesFileError(
            "a block scalar, anchor, alias or tag is used there; edit that value by hand"
        )
    end = len(line.rstrip("\r\n"))
    comment = re.search(r"\s#", line[start:end])
    if comment:
        end = start + comment.start()
    if flow:
        stop = re.search(r"[,}\]]", line[start:end])
        if stop:
            end = start + stop.start()
    return start + len(line[start:end].rstrip())


def _replace_value(lines: list[str], mapping: Any, key: str, value: str) -> _Edit:
    key_line, key_col = mapping.lc.key(key)
    val_line, val_col = mapping.lc.value(key)
    flow = bool(mapping.fa.flow_style())
    current = mapping[key]
    if current is not None and not isinstance(current, str | int | float):
        raise ValuesFileError(f"image.{key} is not a plain value; edit it by hand")
    if current is None and val_line != key_line:
        # `key:` with nothing after it: ruamel points at the next token; append after the colon.
        line = lines[key_line]
        match = re.compile(r"""(["']?)""" + re.escape(key) + r"""\1\s*:""").match(line, key_col)
        if match is None:
            raise ValuesFileError(f"cannot find the value of image.{key}")
        return _Edit(key_line, match.end(), match.end(), " " + _render_scalar(value, '"'))
    line = lines[val_line]
    end = _scalar_end(line, val_col, flow)
    old = line[val_col:end]
    if current is not None and old == "":
        raise ValuesFileError(f"cannot find the value of image.{key}")
    new = _render_scalar(value, old)
    if val_line + 1 < len(lines) and current is not None and not old.startswith(("'", '"')):
        nxt = lines[val_line + 1]
        # A plain scalar may continue on a more-indented next line: refuse rather than guess.
        if (
            nxt.strip()
            and not nxt.lstrip().startswith("#")
            and _indent(nxt) > key_col
            and (":" not in nxt and not flow)
        ):
            raise ValuesFileError(f"image.{key} spans several lines; edit it by hand")
    return _Edit(val_line, val_col, end, new)


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


def _apply(lines: list[str], edit: _Edit) -> None:
    line = lines[edit.line]
    rest = line[edit.end :]
    # Keep a trailing comment in its column when the new value is longer or shorter.
    pad = re.match(r"^( +)(#.*)$", rest.rstrip("\r\n"))
    if pad:
        width = max(1, len(pad.group(1)) - (len(edit.text) - (edit.end - edit.start)))
        rest = " " * width + rest.lstrip(" ")
    lines[edit.line] = line[: edit.start] + edit.text + rest


def _newline(text: str) -> str:
    return "\r\n" if "\r\n" in text else "\n"


def set_image_text(text: str, image: ImageRef, *, what: str = "values file") -> str:
    """Return ``text`` with ``image.repository/tag/digest`` set to ``image``.

    A tag-only reference clears ``digest`` (a stale digest would win over the new tag); a
    digest-only reference clears ``tag``. Missing keys are added inside ``image`` with the
    indentation of its other keys; a missing ``image`` mapping is added at the end.
    """
    data = _load(text, what)
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ValuesFileError(f"{what} must be a YAML mapping at the top level")
    wanted = {"repository": image.repository, "tag": image.tag, "digest": image.digest}
    nl = _newline(text)
    lines = text.splitlines(keepends=True)
    section: Any = data.get("image")
    if "image" not in data:
        if lines and not lines[-1].endswith("\n"):
            lines[-1] += nl
        block = [f"image:{nl}"] + [
            f"  {key}: {_render_scalar(value, '')}{nl}" for key, value in wanted.items()
        ]
        result = "".join(lines + block)
    elif not isinstance(section, dict):
        raise ValuesFileError(f"{what}: 'image' must be a mapping with repository, tag, digest")
    else:
        edits = [_replace_value(lines, section, k, v) for k, v in wanted.items() if k in section]
        for edit in sorted(edits, key=lambda e: (e.line, e.start), reverse=True):
            _apply(lines, edit)
        missing = [k for k in wanted if k not in section]
        rt: Any = section  # a ruamel CommentedMap: knows its flow style and positions
        if missing:
            if rt.fa.flow_style() or not section:
                raise ValuesFileError(
                    f"{what}: 'image' is a flow mapping without {', '.join(missing)}; "
                    "write it in block style or add the keys by hand"
                )
            first = next(iter(section))
            first_line, col = rt.lc.key(first)
            added = [f"{' ' * col}{k}: {_render_scalar(wanted[k], '')}{nl}" for k in missing]
            lines[first_line:first_line] = added
        result = "".join(lines)
    _check(text, result, wanted, what)
    return result


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _check(before: str, after: str, wanted: dict[str, str], what: str) -> None:
    """Re-read the edited text: the image keys must hold ``wanted``, all else must be equal."""
    old = _plain(_load(before, what)) or {}
    new = _plain(_load(after, f"{what} (after the edit)")) or {}
    expected = dict(old)
    expected["image"] = {**(old.get("image") or {}), **wanted}
    if new != expected:
        raise ValuesFileError(f"{what}: the edit would change more than image.*; nothing written")


def _read_text(path: Path) -> str:
    with path.open("r", encoding="utf-8", newline="") as handle:
        return handle.read()


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("w", encoding="utf-8", newline="") as handle:
        handle.write(text)
    shutil.copymode(path, tmp)
    tmp.replace(path)


def _describe(section: Any) -> str:
    if not isinstance(section, dict):
        return "(none)"
    ref = ImageRef(
        repository=str(section.get("repository") or ""),
        tag=str(section.get("tag") or ""),
        digest=str(section.get("digest") or ""),
    )
    return str(ref) or "(none)"


def cmd_set_image(args: argparse.Namespace) -> int:
    out: TextIO = sys.stdout
    path = Path(args.values_file)
    try:
        image = parse_image(args.image)
    except ImageRefError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        before = _read_text(path)
    except UnicodeDecodeError:
        print(f"error: {path} is not UTF-8 text", file=sys.stderr)
        return EXIT_USAGE
    except OSError as exc:
        print(f"error: cannot read {path}: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    try:
        after = set_image_text(before, image, what=str(path))
        old = _describe(_plain(_load(before, str(path)) or {}).get("image"))
    except ValuesFileError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if after == before:
        print(f"{path}: image already {image}", file=out)
        return EXIT_OK
    if args.dry_run:
        import difflib

        out.writelines(
            difflib.unified_diff(
                before.splitlines(keepends=True),
                after.splitlines(keepends=True),
                fromfile=str(path),
                tofile=f"{path} (new)",
            )
        )
        return EXIT_OK
    try:
        _write_atomic(path, after)
    except OSError as exc:
        print(f"error: cannot write {path}: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    print(f"{path}: image {old} -> {image}", file=out)
    return EXIT_OK


# --------------------------------------------------------------------------- plan


@dataclass(frozen=True)
class Release:
    name: str
    namespace: str
    values: tuple[str, ...]
    """Values files in order (later files win); the last one is where its image is set."""


ENVIRONMENTS: dict[str, Release] = {
    "staging": Release("preview-worker", "preview-staging", ("values/staging.yaml",)),
    "canary": Release(
        "preview-worker-canary", "preview", ("values/production.yaml", "values/canary.yaml")
    ),
    "production": Release("preview-worker", "preview", ("values/production.yaml",)),
}
DEFAULT_CHART = "charts/preview-worker"


@dataclass(frozen=True)
class Step:
    title: str
    argv: tuple[str, ...]
    note: str = ""


@dataclass(frozen=True)
class Plan:
    environment: str
    release: Release
    steps: tuple[Step, ...] = field(default_factory=tuple)


DEFAULT_TIMEOUTS = {"staging": "5m", "canary": "5m", "production": "10m"}


def build_plan(
    env: str,
    *,
    chart: str = DEFAULT_CHART,
    image: ImageRef | None = None,
    timeout: str | None = None,
) -> Plan:
    """The commands of docs/rollout.md for one environment, in order, then its rollback."""
    release = ENVIRONMENTS[env]
    wait = timeout or DEFAULT_TIMEOUTS[env]
    values: list[str] = []
    for path in release.values:
        values += ["-f", path]
    ns = ("-n", release.namespace)
    steps: list[Step] = []
    if image is not None:
        target = release.values[-1]
        words = f"promote {image} to production" if env == "production" else f"{image} to {env}"
        steps += [
            Step(
                f"record the image in {target} (only the image lines change)",
                ("preview-worker", "deploy", "set-image", target, str(image)),
            ),
            Step(
                "commit it: the values files are the record of what runs where",
                ("git", "commit", "-m", f"rollout: {words}", target),
            ),
        ]
    steps += [
        Step(
            "preflight: lint the chart with these values",
            ("helm", "lint", chart, "--strict", *values),
        ),
        Step(
            "deploy (install or upgrade) and wait for the rollout",
            (
                "helm",
                "upgrade",
                "--install",
                release.name,
                chart,
                *ns,
                *values,
                "--wait",
                "--timeout",
                wait,
                "--history-max",
                "10",
            ),
        ),
        Step(
            "chart tests: /healthz and /metrics through the Service",
            ("helm", "test", release.name, *ns),
        ),
        Step(
            "verify: helm status, rollout status, /readyz and health through a port-forward",
            (
                "preview-worker",
                "deploy",
                "verify",
                "--release",
                release.name,
                "--namespace",
                release.namespace,
            ),
        ),
    ]
    if env == "production":
        steps.append(
            Step(
                "promotion done: remove the canary (its pod drains and gives jobs back)",
                ("helm", "uninstall", ENVIRONMENTS["canary"].name, *ns, "--wait"),
            )
        )
    rollback_wait = ("--timeout", wait) if env == "production" or timeout else ()
    if env == "canary":
        steps += [
            Step(
                "ROLLBACK (a check failed): remove the canary; stable keeps consuming the queue",
                ("helm", "uninstall", release.name, *ns, "--wait"),
                "or keep the release on its previous image: the next command",
            ),
            Step(
                "ROLLBACK alternative: the canary's previous revision",
                ("helm", "rollback", release.name, *ns, "--wait", *rollback_wait),
            ),
        ]
    else:
        steps.append(
            Step(
                "ROLLBACK (a check failed): the previous revision; then git revert the values",
                ("helm", "rollback", release.name, *ns, "--wait", *rollback_wait),
                "`helm history " + release.name + " -n " + release.namespace + "` lists revisions",
            )
        )
    return Plan(environment=env, release=release, steps=tuple(steps))


def render_plan(plan: Plan) -> str:
    r = plan.release
    out = io.StringIO()
    out.write(
        f"# {plan.environment}: release {r.name} in namespace {r.namespace} "
        f"(values: {', '.join(r.values)})\n"
    )
    for n, step in enumerate(plan.steps, 1):
        out.write(f"\n# {n}. {step.title}\n")
        if step.note:
            out.write(f"#    ({step.note})\n")
        out.write(shlex.join(step.argv) + "\n")
    return out.getvalue()


def cmd_plan(args: argparse.Namespace) -> int:
    image = None
    if args.image:
        try:
            image = parse_image(args.image)
        except ImageRefError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return EXIT_USAGE
    duration = re.compile(r"(?=[0-9])([0-9]+h)?([0-9]+m)?([0-9]+s)?")
    if args.timeout is not None and not duration.fullmatch(args.timeout):
        print(
            f"error: --timeout {args.timeout!r} must be a duration like 5m or 90s", file=sys.stderr
        )
        return EXIT_USAGE
    plan = build_plan(args.env, chart=args.chart, image=image, timeout=args.timeout)
    if args.json:
        doc = {
            "environment": plan.environment,
            "release": plan.release.name,
            "namespace": plan.release.namespace,
            "values": list(plan.release.values),
            "steps": [
                {"title": s.title, "argv": list(s.argv), "command": shlex.join(s.argv)}
                for s in plan.steps
            ],
        }
        print(json.dumps(doc, indent=2))
    else:
        sys.stdout.write(render_plan(plan))
    return EXIT_OK


# --------------------------------------------------------------------------- verify


@dataclass
class Check:
    name: str
    ok: bool
    detail: str


@dataclass
class Tools:
    helm: str
    kubectl: str
    context: str | None = None
    run: Callable[..., subprocess.CompletedProcess[str]] = subprocess.run

    def helm_argv(self, *args: str) -> list[str]:
        extra = ["--kube-context", self.context] if self.context else []
        return [self.helm, *args, *extra]

    def kubectl_argv(self, *args: str) -> list[str]:
        extra = ["--context", self.context] if self.context else []
        return [self.kubectl, *extra, *args]


class ToolMissing(Exception):
    pass


def _resolve(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        raise ToolMissing(f"{name!r} was not found on PATH")
    return found


def _run(tools: Tools, argv: Sequence[str], timeout: float) -> subprocess.CompletedProcess[str]:
    try:
        return tools.run(
            list(argv),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired:
        return subprocess.CompletedProcess(list(argv), 124, "", f"timed out after {timeout:g}s")


def _last_line(text: str) -> str:
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1] if lines else ""


def check_helm_status(tools: Tools, release: str, namespace: str) -> Check:
    proc = _run(
        tools, tools.helm_argv("status", release, "--namespace", namespace, "--output", "json"), 60
    )
    if proc.returncode != 0:
        return Check("helm status", False, _last_line(proc.stderr) or f"exit {proc.returncode}")
    try:
        doc = json.loads(proc.stdout)
        info = doc.get("info", {})
        status = str(info.get("status", ""))
        revision = doc.get("version", "?")
        chart = doc.get("chart", {}).get("metadata", {})
        what = f"revision {revision}, chart {chart.get('name', '?')}-{chart.get('version', '?')}"
        app = chart.get("appVersion")
        if app:
            what += f", app {app}"
    except (ValueError, AttributeError):
        return Check("helm status", False, "helm printed something that is not status JSON")
    if status != "deployed":
        return Check("helm status", False, f"status is {status or 'unknown'!r} ({what})")
    return Check("helm status", True, f"deployed ({what})")


def find_deployments(tools: Tools, release: str, namespace: str) -> tuple[list[str], str]:
    proc = _run(
        tools,
        tools.kubectl_argv(
            "get",
            "deployments",
            "--namespace",
            namespace,
            "--selector",
            f"app.kubernetes.io/instance={release}",
            "--output",
            "name",
        ),
        60,
    )
    if proc.returncode != 0:
        return [], _last_line(proc.stderr) or f"exit {proc.returncode}"
    names = [ln.strip() for ln in proc.stdout.splitlines() if ln.strip()]
    return [n if "/" in n else f"deployment/{n}" for n in names], ""


def check_rollout(tools: Tools, deployment: str, namespace: str, timeout: float) -> Check:
    proc = _run(
        tools,
        tools.kubectl_argv(
            "rollout", "status", deployment, "--namespace", namespace, f"--timeout={timeout:g}s"
        ),
        timeout + 30,
    )
    detail = _last_line(proc.stdout) if proc.returncode == 0 else _last_line(proc.stderr)
    return Check(f"rollout {deployment}", proc.returncode == 0, detail or f"exit {proc.returncode}")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _wait_port(proc: subprocess.Popen[bytes], port: int, deadline: float) -> str | None:
    """None once 127.0.0.1:port accepts; else why it never did."""
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return f"kubectl port-forward exited with {proc.returncode}"
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return None
        except OSError:
            time.sleep(0.1)
    return "kubectl port-forward did not open the local port in time"


def _get(url: str, timeout: float) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return int(resp.status), resp.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as exc:
        return int(exc.code), exc.read().decode("utf-8", "replace")
    except (urllib.error.URLError, OSError) as exc:
        return 0, str(getattr(exc, "reason", exc))


def check_health(
    tools: Tools, deployment: str, namespace: str, *, port: str, timeout: float
) -> list[Check]:
    local = _free_port()
    argv = tools.kubectl_argv(
        "port-forward",
        deployment,
        f"{local}:{port}",
        "--namespace",
        namespace,
        "--address",
        "127.0.0.1",
    )
    try:
        proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
    except OSError as exc:
        return [Check("port-forward", False, f"cannot start kubectl: {exc}")]
    try:
        problem = _wait_port(proc, local, time.monotonic() + timeout)
        if problem is not None:
            if proc.poll() is not None and proc.stderr is not None:
                problem += f": {_last_line(proc.stderr.read().decode('utf-8', 'replace'))}"
            return [Check("port-forward", False, problem)]
        base = f"http://127.0.0.1:{local}"
        checks = []
        code, _body = _get(f"{base}/readyz", timeout)
        checks.append(Check("readyz", code == 200, f"HTTP {code}" if code else _body))
        code, body = _get(f"{base}/api/preview/worker/health", timeout)
        checks.append(_health_check(code, body))
        return checks
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if proc.stderr is not None:
            proc.stderr.close()


_BAD_STATUS = {"unhealthy", "draining", "fail", "failed", "down", "error"}


def _health_check(code: int, body: str) -> Check:
    if code == 0:
        return Check("health", False, body)
    try:
        doc = json.loads(body)
    except ValueError:
        return Check("health", False, f"HTTP {code}, body is not JSON")
    if not isinstance(doc, dict):
        return Check("health", False, f"HTTP {code}, body is not a JSON object")
    status = str(doc.get("status", ""))
    parts = [f"HTTP {code}"]
    for key in ("status", "version", "track", "workerId", "worker_id", "inFlight"):
        if key in doc:
            parts.append(f"{key}={doc[key]}")
    ok = code == 200 and status.lower() not in _BAD_STATUS
    return Check("health", ok, ", ".join(parts))


def verify(
    tools: Tools,
    *,
    release: str,
    namespace: str,
    deployment: str | None,
    port: str,
    timeout: float,
) -> list[Check]:
    checks = [check_helm_status(tools, release, namespace)]
    if deployment:
        deployments = [deployment if "/" in deployment else f"deployment/{deployment}"]
    else:
        deployments, problem = find_deployments(tools, release, namespace)
        if not deployments:
            checks.append(
                Check(
                    "find deployments",
                    False,
                    problem or f"no Deployment labelled app.kubernetes.io/instance={release}",
                )
            )
            return checks
    for name in deployments:
        checks.append(check_rollout(tools, name, namespace, timeout))
    if all(c.ok for c in checks):
        for name in deployments:
            checks += check_health(tools, name, namespace, port=port, timeout=timeout)
    else:
        checks.append(Check("health", False, "skipped: the rollout is not complete"))
    return checks


def cmd_verify(args: argparse.Namespace) -> int:
    if args.timeout <= 0:
        print("error: --timeout must be a positive number of seconds", file=sys.stderr)
        return EXIT_USAGE
    try:
        tools = Tools(
            helm=_resolve(args.helm), kubectl=_resolve(args.kubectl), context=args.context
        )
    except ToolMissing as exc:
        print(f"error: {exc}; install it or pass --helm/--kubectl", file=sys.stderr)
        return EXIT_UNAVAILABLE
    checks = verify(
        tools,
        release=args.release,
        namespace=args.namespace,
        deployment=args.deployment,
        port=args.port,
        timeout=args.timeout,
    )
    healthy = all(c.ok for c in checks)
    if args.json:
        doc = {
            "release": args.release,
            "namespace": args.namespace,
            "healthy": healthy,
            "checks": [{"name": c.name, "ok": c.ok, "detail": c.detail} for c in checks],
        }
        print(json.dumps(doc, indent=2))
    else:
        for c in checks:
            print(f"{'PASS' if c.ok else 'FAIL'}  {c.name}: {c.detail}")
        failed = sum(not c.ok for c in checks)
        verdict = "healthy" if healthy else f"NOT healthy ({failed} of {len(checks)} checks failed)"
        print(f"verdict: {args.release} in {args.namespace} is {verdict}")
    return EXIT_OK if healthy else EXIT_FAILED


# --------------------------------------------------------------------------- argparse


def _k8s_name(raw: str) -> str:
    if not re.match(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$", raw):
        raise argparse.ArgumentTypeError(
            f"{raw!r} is not a valid Kubernetes name (lowercase letters, digits, '-', at most 63)"
        )
    return raw


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``deploy`` and its subcommands to a CLI's subparsers."""
    deploy = sub.add_parser(
        "deploy",
        help="move an image through values files, print rollout plans, verify a release",
        description="Deployment helpers (cross-platform; replace the old shell scripts).",
    )
    dsub = deploy.add_subparsers(dest="deploy_command", metavar="COMMAND", required=True)

    p = dsub.add_parser(
        "set-image",
        help="set image.repository/tag/digest in a values file, keeping comments and layout",
    )
    p.add_argument("values_file", metavar="VALUES_FILE")
    p.add_argument(
        "image",
        metavar="IMAGE",
        help="registry/repo:tag, registry/repo@sha256:…, or both; 'latest' is refused",
    )
    p.add_argument("--dry-run", action="store_true", help="print the diff, write nothing")
    p.set_defaults(func=cmd_set_image)

    p = dsub.add_parser("plan", help="print the helm commands of one environment")
    p.add_argument(
        "env",
        metavar="ENV",
        choices=sorted(ENVIRONMENTS),
        help="one of: " + ", ".join(sorted(ENVIRONMENTS)),
    )
    p.add_argument("--chart", default=DEFAULT_CHART, help=f"chart path (default {DEFAULT_CHART})")
    p.add_argument("--image", help="also print the set-image step for this image")
    p.add_argument(
        "--timeout", help="helm --timeout (default 5m; 10m for production, as in docs/rollout.md)"
    )
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_plan)

    p = dsub.add_parser("verify", help="check a release: helm status, rollout, health")
    p.add_argument("--release", required=True, type=_k8s_name)
    p.add_argument("--namespace", "-n", required=True, type=_k8s_name)
    p.add_argument(
        "--deployment",
        type=_k8s_name,
        help="Deployment name (default: found by app.kubernetes.io/instance=RELEASE)",
    )
    p.add_argument("--port", default="http", help="container port to forward (default http)")
    p.add_argument(
        "--timeout",
        type=float,
        default=120.0,
        help="seconds for the rollout and for each health request (default 120)",
    )
    p.add_argument("--context", help="kube context for helm and kubectl")
    p.add_argument("--helm", default="helm", help="helm executable (default: helm on PATH)")
    p.add_argument(
        "--kubectl", default="kubectl", help="kubectl executable (default: kubectl on PATH)"
    )
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_verify)


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``deploy …`` on its own (``python -m app.deploy set-image …``)."""
    parser = argparse.ArgumentParser(prog="preview-worker")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    add_commands(sub)
    args_list = list(sys.argv[1:] if argv is None else argv)
    if args_list and args_list[0] != "deploy":
        args_list = ["deploy", *args_list]
    args = parser.parse_args(args_list)
    func: Callable[[argparse.Namespace], int] = args.func
    return func(args)


if __name__ == "__main__":
    raise SystemExit(main())
