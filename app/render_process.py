"""Entry point of the render child process: ``python -m app.render_process``.

Protocol: the work description (:class:`Work`, JSON) arrives on stdin; one JSON line leaves on
stdout: ``{"ok": true, "manifest": {...}, "peakRssBytes": n}`` (exit 0) or ``{"ok": false,
"reason": ..., "message": ..., "retryable": ...}`` (exit 3). Anything else (a crash, a signal)
is the parent's to report. The child dies with its parent (``PR_SET_PDEATHSIG``) and runs
at a lower CPU priority than the worker, whose event loop must keep renewing leases.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import sys
from pathlib import Path

import msgspec

from .assets import AssetPolicy
from .errors import JobError
from .payload import PreviewJob

EXIT_JOB_ERROR = 3
NICE = 5
PR_SET_PDEATHSIG = 1


class Work(msgspec.Struct, frozen=True, kw_only=True):
    job: PreviewJob
    out_dir: str
    assets_dir: str
    asset_hosts: list[str]
    asset_max_bytes: int
    asset_timeout_seconds: float
    worker_version: str
    parent_pid: int


def _die_with_parent(parent_pid: int) -> None:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        return
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        os._exit(1)


def _emit(message: dict[str, object]) -> None:
    sys.stdout.write(msgspec.json.encode(message).decode() + "\n")
    sys.stdout.flush()


def main() -> int:
    try:
        work = msgspec.json.decode(sys.stdin.buffer.read(), type=Work)
    except msgspec.MsgspecError as exc:
        _emit(
            {
                "ok": False,
                "reason": "render_protocol",
                "message": f"bad work description: {exc}",
                "retryable": False,
            }
        )
        return EXIT_JOB_ERROR
    _die_with_parent(work.parent_pid)
    with contextlib.suppress(OSError):
        os.nice(NICE)
    from .render_pipeline import peak_rss_bytes, render  # heavy imports after the handshake

    policy = AssetPolicy(
        assets_dir=Path(work.assets_dir),
        hosts=tuple(work.asset_hosts),
        max_bytes=work.asset_max_bytes,
        timeout_seconds=work.asset_timeout_seconds,
    )
    try:
        manifest = render(work.job, Path(work.out_dir), policy, work.worker_version)
    except JobError as exc:
        _emit(
            {"ok": False, "reason": exc.reason, "message": exc.message, "retryable": exc.retryable}
        )
        return EXIT_JOB_ERROR
    _emit({"ok": True, "manifest": manifest, "peakRssBytes": peak_rss_bytes()})
    return 0


if __name__ == "__main__":
    sys.exit(main())
