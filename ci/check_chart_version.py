"""ct's check-version-increment, reproduced: a chart changed since the target branch needs a
higher `version` in Chart.yaml.

The changes counted are the commits between the merge base with the target branch and HEAD (what
a pull request would merge). On the target branch itself there is nothing to compare, which passes.

Usage: python ci/check_chart_version.py [--base REF] [--chart DIR] [--repo DIR]
  --base   target branch (default: origin/main when it exists, else main)
  --chart  chart folder relative to the repository (default: charts/preview-worker)
Exit 0: unchanged or bumped; 1: changed without a bump; 2: cannot tell (bad input, no history).
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path

import yaml

SEMVER = re.compile(
    r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(?:-([0-9A-Za-z.-]+))?(?:\+[0-9A-Za-z.-]+)?$"
)


class CheckError(Exception):
    pass


def semver_key(version: str) -> tuple[int, int, int, int, tuple[tuple[int, int | str], ...]]:
    match = SEMVER.match(version)
    if not match:
        raise CheckError(f"chart version {version!r} is not semantic (MAJOR.MINOR.PATCH)")
    major, minor, patch, pre = match.groups()
    if pre is None:
        return int(major), int(minor), int(patch), 1, ()
    parts = tuple((0, int(p)) if p.isdigit() else (1, p) for p in pre.split("."))
    return int(major), int(minor), int(patch), 0, parts


def git(repo: Path, *args: str) -> str:
    result = subprocess.run(
        ["git", "-C", str(repo), *args], capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        raise CheckError(f"git {' '.join(args)}: {result.stderr.strip()}")
    return result.stdout


def default_base(repo: Path) -> str:
    for ref in ("origin/main", "main"):
        probe = subprocess.run(
            ["git", "-C", str(repo), "rev-parse", "--verify", "--quiet", ref],
            capture_output=True,
            check=False,
        )
        if probe.returncode == 0:
            return ref
    raise CheckError("no target branch: neither origin/main nor main exists (pass --base)")


def chart_version(text: str, where: str) -> str:
    data = yaml.safe_load(text)
    if not isinstance(data, dict) or "version" not in data:
        raise CheckError(f"{where}: no version field")
    return str(data["version"])


def check(repo: Path, chart: str, base: str) -> str:
    try:
        merge_base = git(repo, "merge-base", base, "HEAD").strip()
    except CheckError as exc:
        raise CheckError(
            f"needs the history of {base} (fetch it; no shallow clone): {exc}"
        ) from None
    changed = git(repo, "diff", "--name-only", merge_base, "HEAD", "--", chart).split()
    if not changed:
        return f"{chart}: unchanged since {base}, no version bump needed"
    new = chart_version(git(repo, "show", f"HEAD:{chart}/Chart.yaml"), f"HEAD:{chart}/Chart.yaml")
    try:
        old_text = git(repo, "show", f"{merge_base}:{chart}/Chart.yaml")
    except CheckError:
        semver_key(new)
        return f"{chart}: new chart at version {new}"
    old = chart_version(old_text, f"{base}:{chart}/Chart.yaml")
    if semver_key(new) <= semver_key(old):
        files = ", ".join(changed[:5]) + (" ..." if len(changed) > 5 else "")
        raise ValueError(
            f"{chart} changed since {base} ({files}) but its version {new} is not higher than "
            f"{old}: bump `version` in {chart}/Chart.yaml"
        )
    return f"{chart}: version bumped {old} -> {new}"


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--base")
    parser.add_argument("--chart", default="charts/preview-worker")
    parser.add_argument("--repo", default=str(Path(__file__).resolve().parent.parent))
    args = parser.parse_args(argv)
    repo = Path(args.repo)
    try:
        print(check(repo, args.chart, args.base or default_base(repo)))
    except CheckError as exc:
        print(f"check_chart_version: {exc}", file=sys.stderr)
        return 2
    except ValueError as exc:
        print(f"check_chart_version: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
