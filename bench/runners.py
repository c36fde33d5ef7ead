"""Start runner subprocesses (``bench.runner_*``) pinned to a CPU, and read their results."""

from __future__ import annotations

import json
import resource
import selectors
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.common import READY, RESULT_PREFIX

ROOT = Path(__file__).resolve().parent.parent


class RunnerError(RuntimeError):
    """A runner failed or timed out; the message holds the tail of its stderr."""


@dataclass(frozen=True)
class System:
    name: str
    python: Path
    module: str
    options: tuple[str, ...] = ()
    """``KEY=VALUE`` runner options (``--option``)."""
    note: str = ""


def command(system: System, mode: str, url: str, pin: Sequence[str], **args: Any) -> list[str]:
    cmd = [*pin, str(system.python), "-m", system.module, mode, "--url", url]
    for key, value in args.items():
        flag = "--" + key.replace("_", "-")
        if value is True:
            cmd.append(flag)
        elif value is not False and value is not None:
            cmd.extend((flag, str(value)))
    for option in system.options:
        cmd.extend(("--option", option))
    return cmd


def _parse(system: System, mode: str, stdout: str, stderr: str, code: int | None) -> dict[str, Any]:
    for line in stdout.splitlines():
        if line.startswith(RESULT_PREFIX):
            result: dict[str, Any] = json.loads(line[len(RESULT_PREFIX) :])
            return result
    tail = "\n".join(stderr.strip().splitlines()[-8:])
    raise RunnerError(f"{system.name} {mode} runner exited {code} without a result:\n{tail}")


def run(
    system: System, mode: str, url: str, pin: Sequence[str], timeout: float, **args: Any
) -> dict[str, Any]:
    """Run one runner to completion; adds ``cpu_seconds`` (user+sys of the subprocess)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    try:
        proc = subprocess.run(
            command(system, mode, url, pin, **args),
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired:
        raise RunnerError(f"{system.name} {mode} runner did not finish in {timeout:g} s") from None
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    result = _parse(system, mode, proc.stdout, proc.stderr, proc.returncode)
    result["cpu_seconds"] = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return result


class Background:
    """A runner in the background (a consumer during a latency run)."""

    def __init__(self, system: System, mode: str, url: str, pin: Sequence[str], **args: Any):
        self.system = system
        self.mode = mode
        self.proc = subprocess.Popen(
            command(system, mode, url, pin, **args),
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self._head: list[str] = []

    def wait_ready(self, timeout: float) -> None:
        """Wait for the runner's ``READY`` line (it is about to consume)."""
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        with selectors.DefaultSelector() as sel:
            sel.register(self.proc.stdout, selectors.EVENT_READ)
            while True:
                left = deadline - time.monotonic()
                if left <= 0 or not sel.select(left):
                    self.kill()
                    raise RunnerError(f"{self.system.name} runner not ready in {timeout:g} s")
                line = self.proc.stdout.readline()
                if not line:  # exited
                    self.result(timeout=1)
                if line.strip() == READY:
                    return
                self._head.append(line)

    def result(self, timeout: float) -> dict[str, Any]:
        try:
            out, err = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise RunnerError(
                f"{self.system.name} {self.mode} runner did not finish in {timeout:g} s"
            ) from None
        return _parse(self.system, self.mode, "".join(self._head) + out, err, self.proc.returncode)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.communicate()
