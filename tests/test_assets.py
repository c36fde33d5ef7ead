"""Asset location: confinement to PREVIEW_ASSETS_DIR, allowed hosts, caps, error classes."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.assets import AssetPolicy, host_allowed, locate
from app.errors import JobError, PermanentJobError, RetryableJobError
from app.payload import Asset
from tests.render_helpers import asset_server, make_image


@pytest.fixture
def assets_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "assets"
    make_image(folder / "img" / "board.png")
    (tmp_path / "secret.txt").write_text("outside")
    return folder


def policy(
    assets_dir: Path, *hosts: str, max_bytes: int = 1 << 20, timeout: float = 5.0
) -> AssetPolicy:
    return AssetPolicy(
        assets_dir=assets_dir, hosts=hosts, max_bytes=max_bytes, timeout_seconds=timeout
    )


def image(uri: str, asset_id: str = "pic") -> Asset:
    return Asset(id=asset_id, type="image", uri=uri)


def refused(asset: Asset, pol: AssetPolicy, tmp_path: Path) -> JobError:
    with pytest.raises(JobError) as info:
        locate(asset, pol, tmp_path / "downloads")
    assert asset.id in info.value.message
    return info.value


def test_relative_and_absolute_paths_inside_are_allowed(assets_dir: Path, tmp_path: Path) -> None:
    pol = policy(assets_dir)
    expected = (assets_dir / "img" / "board.png").resolve()
    assert locate(image("img/board.png"), pol, tmp_path) == expected
    assert locate(image(str(assets_dir / "img" / "board.png")), pol, tmp_path) == expected


@pytest.mark.parametrize("uri", ["../secret.txt", "img/../../secret.txt", "img/../board.png"])
def test_dot_dot_is_refused(assets_dir: Path, tmp_path: Path, uri: str) -> None:
    error = refused(image(uri), policy(assets_dir), tmp_path)
    assert isinstance(error, PermanentJobError)
    assert error.reason == "asset_forbidden"
    assert "'..'" in error.message


def test_absolute_path_outside_is_refused(assets_dir: Path, tmp_path: Path) -> None:
    error = refused(image(str(tmp_path / "secret.txt")), policy(assets_dir), tmp_path)
    assert (error.reason, error.retryable) == ("asset_forbidden", False)
    assert "outside PREVIEW_ASSETS_DIR" in error.message


def test_symlink_escaping_is_refused(assets_dir: Path, tmp_path: Path) -> None:
    (assets_dir / "link.txt").symlink_to(tmp_path / "secret.txt")
    (assets_dir / "linkdir").symlink_to(tmp_path)
    for uri in ("link.txt", "linkdir/secret.txt"):
        error = refused(image(uri), policy(assets_dir), tmp_path)
        assert error.reason == "asset_forbidden"


def test_symlink_inside_is_allowed(assets_dir: Path, tmp_path: Path) -> None:
    (assets_dir / "alias.png").symlink_to(assets_dir / "img" / "board.png")
    found = locate(image("alias.png"), policy(assets_dir), tmp_path)
    assert found == (assets_dir / "img" / "board.png").resolve()


@pytest.mark.parametrize(
    "uri", ["file:///etc/passwd", "ftp://example.com/a.png", "data:image/png;base64,AAAA"]
)
def test_other_schemes_are_refused(assets_dir: Path, tmp_path: Path, uri: str) -> None:
    error = refused(image(uri), policy(assets_dir, "example.com"), tmp_path)
    assert error.reason == "asset_forbidden"
    assert "scheme" in error.message


def test_missing_and_oversized_local_files(assets_dir: Path, tmp_path: Path) -> None:
    error = refused(image("img/nope.png"), policy(assets_dir), tmp_path)
    assert (error.reason, error.retryable) == ("asset_missing", False)
    error = refused(image("img"), policy(assets_dir), tmp_path)
    assert error.reason == "asset_missing"
    error = refused(image("img/board.png"), policy(assets_dir, max_bytes=10), tmp_path)
    assert error.reason == "asset_too_large"


def test_host_allowlist_rules() -> None:
    assert host_allowed("https://cdn.example.com/a.png", ("cdn.example.com",))
    assert host_allowed("http://cdn.example.com:8080/a.png", ("cdn.example.com",))
    assert host_allowed("http://127.0.0.1:9000/a", ("127.0.0.1:9000",))
    assert not host_allowed("http://127.0.0.1:9001/a", ("127.0.0.1:9000",))
    assert not host_allowed("https://evil.example.com/a.png", ("cdn.example.com",))
    assert not host_allowed("https://cdn.example.com.evil.net/a", ("cdn.example.com",))
    assert not host_allowed("https://cdn.example.com/a", ())


def test_download_from_allowed_host(assets_dir: Path, tmp_path: Path) -> None:
    body = (assets_dir / "img" / "board.png").read_bytes()
    with asset_server() as server:
        server.routes["/board.png"] = (200, body, {})
        got = locate(
            image(server.url("/board.png")), policy(assets_dir, server.netloc), tmp_path / "dl"
        )
    assert got.read_bytes() == body
    assert got.parent == tmp_path / "dl"


def test_disallowed_host_is_refused_without_a_request(assets_dir: Path, tmp_path: Path) -> None:
    with asset_server() as server:
        server.routes["/board.png"] = (200, b"x", {})
        error = refused(
            image(server.url("/board.png")), policy(assets_dir, "cdn.example.com"), tmp_path
        )
    assert (error.reason, error.retryable) == ("asset_forbidden", False)
    assert "PREVIEW_ASSET_HOSTS" in error.message


def test_credentials_in_url_are_refused(assets_dir: Path, tmp_path: Path) -> None:
    error = refused(
        image("https://user:pw@cdn.example.com/a.png"),
        policy(assets_dir, "cdn.example.com"),
        tmp_path,
    )
    assert error.reason == "asset_forbidden"
    assert "pw" not in error.message


def test_redirect_to_disallowed_host_is_refused(assets_dir: Path, tmp_path: Path) -> None:
    with asset_server() as server:
        server.routes["/r"] = (302, b"", {"Location": "http://evil.example.net/x.png"})
        error = refused(image(server.url("/r")), policy(assets_dir, server.netloc), tmp_path)
    assert error.reason == "asset_forbidden"
    assert "evil.example.net" in error.message


@pytest.mark.parametrize(
    ("status", "reason", "retryable"),
    [
        (404, "asset_missing", False),
        (410, "asset_missing", False),
        (403, "asset_rejected", False),
        (500, "asset_unavailable", True),
        (503, "asset_unavailable", True),
        (429, "asset_unavailable", True),
    ],
)
def test_http_status_classification(
    assets_dir: Path, tmp_path: Path, status: int, reason: str, retryable: bool
) -> None:
    with asset_server() as server:
        server.routes["/a.png"] = (status, b"no", {})
        error = refused(image(server.url("/a.png")), policy(assets_dir, server.netloc), tmp_path)
    assert (error.reason, error.retryable) == (reason, retryable)
    assert isinstance(error, RetryableJobError if retryable else PermanentJobError)
    assert str(status) in error.message


def test_size_cap_by_header_and_by_body(assets_dir: Path, tmp_path: Path) -> None:
    with asset_server() as server:
        server.routes["/big"] = (200, b"x" * 5000, {})
        server.routes["/liar"] = (200, b"x" * 5000, {"Content-Length": "10"})
        pol = policy(assets_dir, server.netloc, max_bytes=1000)
        assert refused(image(server.url("/big")), pol, tmp_path).reason == "asset_too_large"
        # a lying Content-Length never lets more than the cap through
        got = locate(image(server.url("/liar")), policy(assets_dir, server.netloc), tmp_path)
        assert got.stat().st_size == 10


@pytest.fixture
def silent_server() -> Iterator[int]:
    """Accepts connections and never answers."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    stop = threading.Event()
    accepted: list[socket.socket] = []

    def serve() -> None:
        sock.settimeout(0.05)
        while not stop.is_set():
            try:
                conn, _ = sock.accept()
                accepted.append(conn)
            except TimeoutError:
                continue

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield sock.getsockname()[1]
    finally:
        stop.set()
        thread.join()
        for conn in accepted:
            conn.close()
        sock.close()


def test_timeout_is_retryable(assets_dir: Path, tmp_path: Path, silent_server: int) -> None:
    url = f"http://127.0.0.1:{silent_server}/a.png"
    pol = policy(assets_dir, f"127.0.0.1:{silent_server}", timeout=0.3)
    error = refused(image(url), pol, tmp_path)
    assert (error.reason, error.retryable) == ("asset_unavailable", True)


def test_connection_refused_is_retryable(assets_dir: Path, tmp_path: Path) -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there now
    error = refused(
        image(f"http://127.0.0.1:{port}/a.png"), policy(assets_dir, f"127.0.0.1:{port}"), tmp_path
    )
    assert (error.reason, error.retryable) == ("asset_unavailable", True)
