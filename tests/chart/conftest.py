from __future__ import annotations

import pytest

from tests.chart.helm import ENVS, Obj, helm_binary, render
from tests.conftest import require_tool


class Renders:
    """Session cache: one `helm template` per (helm version, environment)."""

    def __init__(self) -> None:
        self._cache: dict[tuple[str, str], list[Obj]] = {}

    def get(self, version: str, env: str) -> list[Obj]:
        key = (version, env)
        if key not in self._cache:
            binary = helm_binary(version)
            require_tool(binary is not None, f"{version} (.tools/bin/{version}, `make tools`)")
            assert binary is not None
            self._cache[key] = render(binary, ENVS[env])
        return self._cache[key]


@pytest.fixture(scope="session")
def renders() -> Renders:
    return Renders()


@pytest.fixture
def helm3() -> str:
    binary = helm_binary("helm3")
    require_tool(binary is not None, "helm3 (.tools/bin/helm3, `make tools`)")
    assert binary is not None
    return binary


@pytest.fixture
def helm4() -> str:
    binary = helm_binary("helm4")
    require_tool(binary is not None, "helm4 (.tools/bin/helm4, `make tools`)")
    assert binary is not None
    return binary
