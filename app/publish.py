"""Atomic publication of a preview folder.

A render writes into ``DATA_DIR/previews/<projectId>/.tmp-<jobId>-<random>/`` (same filesystem
as the target) and the finished folder is swapped in whole: with ``renameat2(RENAME_EXCHANGE)``
where the kernel and filesystem offer it (readers see either the old or the new folder, never
none), otherwise by renaming the old folder aside first. Readers never see half a preview.
Leftovers of a crashed render (``.tmp-*``, ``.old-*``) are removed once they are older than
any live render can be.
"""

from __future__ import annotations

import ctypes
import errno
import os
import shutil
import tempfile
import time
from pathlib import Path

AT_FDCWD = -100
RENAME_EXCHANGE = 2
STAGING_PREFIX = ".tmp-"
ASIDE_PREFIX = ".old-"


def _renameat2() -> object | None:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
    except OSError:
        return None
    return getattr(libc, "renameat2", None)


_RENAMEAT2 = _renameat2()


def staging_dir(project_dir: Path, job_id: str) -> Path:
    project_dir.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f"{STAGING_PREFIX}{job_id}-", dir=project_dir))


def sweep_stale(project_dir: Path, older_than_seconds: float) -> list[Path]:
    """Remove staging/aside folders older than ``older_than_seconds``; return what went."""
    removed: list[Path] = []
    if not project_dir.is_dir():
        return removed
    limit = time.time() - older_than_seconds
    for entry in project_dir.iterdir():
        if not entry.name.startswith((STAGING_PREFIX, ASIDE_PREFIX)):
            continue
        try:
            if entry.lstat().st_mtime < limit:
                shutil.rmtree(entry, ignore_errors=True)
                removed.append(entry)
        except FileNotFoundError:
            continue
    return removed


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths atomically; False when the system cannot."""
    if _RENAMEAT2 is None:
        return False
    fn = _RENAMEAT2
    rc = fn(AT_FDCWD, os.fsencode(a), AT_FDCWD, os.fsencode(b), RENAME_EXCHANGE)  # type: ignore[operator]
    if rc == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOENT):
        return False
    raise OSError(err, os.strerror(err), str(b))


def publish(staging: Path, final: Path) -> Path | None:
    """Make ``staging`` visible as ``final``, replacing any previous folder whole.

    Only renames happen here (fast, safe to call on the event loop); the previous preview is
    returned for the caller to delete (None when there was none).
    """
    staging.chmod(0o755)
    if final.exists() and _exchange(staging, final):
        return staging  # now holds the previous preview
    try:
        os.rename(staging, final)
        return None
    except OSError as exc:
        if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST):
            raise
    aside = Path(tempfile.mkdtemp(prefix=f"{ASIDE_PREFIX}{final.name}-", dir=final.parent))
    os.rename(final, aside / final.name)
    os.rename(staging, final)
    return aside
