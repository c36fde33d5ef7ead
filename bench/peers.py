"""The peers' venv: saq and arq at pinned versions in ``.tools/bench-venv`` (git-ignored), created
on first use with the ordinary ``pip`` client. Never part of the project's dependencies."""

from __future__ import annotations

import subprocess
import sys
import venv
from pathlib import Path

PINS = (
    "saq==0.26.4",
    "arq==0.28.0",
    # their shared dependencies, pinned too (arq 0.28 needs redis<6; the project uses redis 8)
    "redis==5.3.1",
    "hiredis==3.5.0",
    "typing_extensions==4.16.0",  # saq imports it without declaring it
    "croniter==7.0.0",
    "python-dateutil==4.0.0",
    "click==8.5.1",
    "PyJWT==2.15.1",
    "tzdata==2026.6",
)
DEFAULT_DIR = Path(".tools/bench-venv")


class PeersUnavailable(RuntimeError):
    """The venv could not be created or filled (e.g. no access to PyPI)."""


def python_of(venv_dir: Path) -> Path:
    return venv_dir / "bin" / "python"


def ensure(venv_dir: Path = DEFAULT_DIR) -> Path:
    """Create or update the venv so it holds exactly :data:`PINS`; return its python."""
    stamp = venv_dir / ".bench-pins"
    wanted = "\n".join(PINS) + "\n"
    python = python_of(venv_dir)
    if python.exists() and stamp.exists() and stamp.read_text() == wanted:
        return python
    print(f"creating {venv_dir} with {', '.join(PINS[:2])} ...", file=sys.stderr, flush=True)
    try:
        venv.EnvBuilder(with_pip=True, clear=True).create(venv_dir)
    except (OSError, subprocess.CalledProcessError) as exc:
        raise PeersUnavailable(f"cannot create {venv_dir}: {exc}") from None
    proc = subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", *PINS],
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        tail = "\n".join(proc.stderr.strip().splitlines()[-5:])
        raise PeersUnavailable(f"pip could not install the peers into {venv_dir}:\n{tail}")
    stamp.write_text(wanted)
    return python


def installed_versions(python: Path) -> dict[str, str]:
    """``name -> version`` of what the venv really holds (printed with the results)."""
    proc = subprocess.run(
        [str(python), "-m", "pip", "list", "--format=freeze", "--disable-pip-version-check"],
        capture_output=True,
        text=True,
        check=False,
    )
    out: dict[str, str] = {}
    for line in proc.stdout.splitlines():
        name, _, version = line.partition("==")
        if version:
            out[name.lower()] = version
    return out
