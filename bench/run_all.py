"""``make bench``: the queue bench, then the render bench when ``bench/render_bench.py`` exists.

    .venv/bin/python -m bench.run_all

Each bench runs as its own ``python -m`` subprocess; the exit status is the first failure's.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
BENCHES = ("queue_bench", "render_bench")


def main() -> int:
    status = 0
    for name in BENCHES:
        if not (HERE / f"{name}.py").exists():
            print(f"bench.{name}: not present, skipped", file=sys.stderr)
            continue
        print(f"== bench.{name} ==", flush=True)
        code = subprocess.run([sys.executable, "-m", f"bench.{name}"], cwd=HERE.parent).returncode
        if code != 0:
            print(f"bench.{name} exited {code}", file=sys.stderr)
            status = status or code
    return status


if __name__ == "__main__":
    sys.exit(main())
