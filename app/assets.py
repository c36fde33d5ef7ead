"""Locating assets safely: local files confined to PREVIEW_ASSETS_DIR, http(s) from allowed hosts.

A ``uri`` without a scheme is a path: relative to PREVIEW_ASSETS_DIR or absolute inside it.
``..`` components are refused outright and symlinks are resolved before the confinement check,
so a link pointing outside the folder is refused too. ``http``/``https`` URLs are fetched only
from hosts listed in PREVIEW_ASSET_HOSTS (``host`` allows any port, ``host:port`` that port
only), every redirect hop is checked again, bodies are capped at PREVIEW_ASSET_MAX_BYTES and
the whole download at PREVIEW_ASSET_TIMEOUT_SECONDS. Every other scheme is refused.

Errors name the asset id. Client-side problems (refused location, 404, too large) are
:class:`PermanentJobError`; transient ones (5xx, 429, timeouts, connection errors) are
:class:`RetryableJobError`.
"""

from __future__ import annotations

import http.client
import os
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO, Any
from urllib.parse import urlsplit

from .errors import PermanentJobError, RetryableJobError
from .payload import Asset

CHUNK = 64 * 1024
RETRYABLE_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})
MISSING_STATUS = frozenset({404, 410})


@dataclass(frozen=True, kw_only=True)
class AssetPolicy:
    assets_dir: Path
    hosts: tuple[str, ...]
    max_bytes: int
    timeout_seconds: float


def locate(asset: Asset, policy: AssetPolicy, download_dir: Path) -> Path:
    """Return a local file holding the asset's bytes (downloading it if it is a URL)."""
    parts = urlsplit(asset.uri)
    scheme = parts.scheme.lower()
    if scheme in ("http", "https"):
        return download(asset, policy, download_dir)
    if scheme:
        raise PermanentJobError(
            "asset_forbidden",
            f"asset {asset.id!r}: scheme {scheme!r} is not allowed (use a path inside "
            "PREVIEW_ASSETS_DIR or an http(s) URL of an allowed host)",
        )
    return local_path(asset, policy)


def local_path(asset: Asset, policy: AssetPolicy) -> Path:
    uri = asset.uri
    if "\x00" in uri:
        raise PermanentJobError("asset_forbidden", f"asset {asset.id!r}: path contains NUL")
    pure = PurePosixPath(uri)
    if ".." in pure.parts:
        raise PermanentJobError(
            "asset_forbidden", f"asset {asset.id!r}: '..' is not allowed in asset paths"
        )
    base = Path(os.path.realpath(policy.assets_dir))
    candidate = Path(uri) if pure.is_absolute() else base / uri
    real = Path(os.path.realpath(candidate))
    if not real.is_relative_to(base):
        what = "absolute path" if pure.is_absolute() else "path (through a symlink)"
        raise PermanentJobError(
            "asset_forbidden", f"asset {asset.id!r}: {what} is outside PREVIEW_ASSETS_DIR"
        )
    try:
        info = real.stat()
    except FileNotFoundError:
        raise PermanentJobError(
            "asset_missing", f"asset {asset.id!r}: file {uri!r} does not exist"
        ) from None
    except OSError as exc:
        raise PermanentJobError(
            "asset_missing", f"asset {asset.id!r}: cannot read {uri!r}: {exc.strerror}"
        ) from None
    if not real.is_file():
        raise PermanentJobError("asset_missing", f"asset {asset.id!r}: {uri!r} is not a file")
    if info.st_size > policy.max_bytes:
        raise PermanentJobError(
            "asset_too_large",
            f"asset {asset.id!r}: {info.st_size} bytes, the limit is {policy.max_bytes}",
        )
    return real


def host_allowed(url: str, hosts: tuple[str, ...]) -> bool:
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https") or not parts.hostname:
        return False
    try:
        port = parts.port or (443 if scheme == "https" else 80)
    except ValueError:
        return False
    host = parts.hostname.lower()
    return host in hosts or f"{host}:{port}" in hosts


class _CheckedRedirects(urllib.request.HTTPRedirectHandler):
    def __init__(self, asset: Asset, hosts: tuple[str, ...]) -> None:
        self.asset = asset
        self.hosts = hosts

    def redirect_request(
        self,
        req: urllib.request.Request,
        fp: IO[bytes],
        code: int,
        msg: str,
        headers: http.client.HTTPMessage,
        newurl: str,
    ) -> urllib.request.Request | None:
        if not host_allowed(newurl, self.hosts):
            host = urlsplit(newurl).hostname or "?"
            raise PermanentJobError(
                "asset_forbidden",
                f"asset {self.asset.id!r}: redirected to host {host!r}, "
                "which is not in PREVIEW_ASSET_HOSTS",
            )
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def download(asset: Asset, policy: AssetPolicy, download_dir: Path) -> Path:
    parts = urlsplit(asset.uri)
    if parts.username is not None or parts.password is not None:
        raise PermanentJobError(
            "asset_forbidden", f"asset {asset.id!r}: credentials in asset URLs are not allowed"
        )
    if not host_allowed(asset.uri, policy.hosts):
        raise PermanentJobError(
            "asset_forbidden",
            f"asset {asset.id!r}: host {parts.hostname or '?'!r} is not in PREVIEW_ASSET_HOSTS",
        )
    opener = urllib.request.build_opener(_CheckedRedirects(asset, policy.hosts))
    request = urllib.request.Request(asset.uri, headers={"User-Agent": "preview-worker"})
    deadline = time.monotonic() + policy.timeout_seconds
    target = download_dir / asset.id
    download_dir.mkdir(parents=True, exist_ok=True)
    try:
        with opener.open(request, timeout=policy.timeout_seconds) as response:
            _copy_capped(asset, response, target, policy.max_bytes, deadline)
    except urllib.error.HTTPError as exc:
        raise _status_error(asset, exc.code) from None
    except (PermanentJobError, RetryableJobError):
        raise
    except TimeoutError:
        raise RetryableJobError(
            "asset_unavailable", f"asset {asset.id!r}: download timed out"
        ) from None
    except urllib.error.URLError as exc:
        raise RetryableJobError(
            "asset_unavailable", f"asset {asset.id!r}: download failed: {exc.reason}"
        ) from None
    except (OSError, http.client.HTTPException) as exc:
        raise RetryableJobError(
            "asset_unavailable", f"asset {asset.id!r}: download failed: {exc}"
        ) from None
    return target


def _status_error(asset: Asset, status: int) -> PermanentJobError | RetryableJobError:
    if status in MISSING_STATUS:
        return PermanentJobError("asset_missing", f"asset {asset.id!r}: HTTP {status}")
    if status in RETRYABLE_STATUS or status >= 500:
        return RetryableJobError("asset_unavailable", f"asset {asset.id!r}: HTTP {status}")
    return PermanentJobError("asset_rejected", f"asset {asset.id!r}: HTTP {status}")


def _copy_capped(asset: Asset, response: Any, target: Path, cap: int, deadline: float) -> None:
    length = response.headers.get("Content-Length")
    if length is not None and length.isdigit() and int(length) > cap:
        raise PermanentJobError(
            "asset_too_large", f"asset {asset.id!r}: {length} bytes, the limit is {cap}"
        )
    received = 0
    with target.open("wb") as out:
        while True:
            if time.monotonic() > deadline:
                raise RetryableJobError(
                    "asset_unavailable", f"asset {asset.id!r}: download timed out"
                )
            chunk = response.read(CHUNK)
            if not chunk:
                break
            received += len(chunk)
            if received > cap:
                raise PermanentJobError(
                    "asset_too_large", f"asset {asset.id!r}: more than {cap} bytes"
                )
            out.write(chunk)
    if length is not None and length.isdigit() and received < int(length):
        raise RetryableJobError(
            "asset_unavailable",
            f"asset {asset.id!r}: connection closed after {received} of {length} bytes",
        )
