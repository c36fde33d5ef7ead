"""A TCP proxy in front of a test redis-server that breaks one connection on purpose.

What a failover or a network blip does to a command in flight, made deterministic. Each trap
arms once and its event is set when it fired; the connection it hit is closed on both sides.

- ``cut_reply_containing(marker)``: the next reply containing ``marker`` is dropped. The
  command ran in Redis; the client only sees a dead connection.
- ``cut_reply_to_request_containing(marker)``: the next request containing ``marker`` is
  forwarded and runs, and its reply is dropped (for replies that carry no recognisable bytes).
- ``cut_request_containing(marker)``: the next request containing ``marker`` is not forwarded
  (the command fails without running); ``block_requests_containing(marker)`` does so for every
  such request until ``unblock_requests()``.

``pretend_redis_version("6.0")`` rewrites the ``redis_version`` the server reports in INFO
(same length, so the reply stays well-formed): a Redis 7 that the client takes for a 6.0.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field


@dataclass
class Trap:
    marker: bytes | None = None
    fired: asyncio.Event = field(default_factory=asyncio.Event)
    persistent: bool = False

    def arm(self, marker: bytes, *, persistent: bool = False) -> None:
        self.fired.clear()
        self.marker = marker
        self.persistent = persistent

    def disarm(self) -> None:
        self.marker = None

    def hit(self, window: bytes) -> bool:
        if self.marker is None or self.marker not in window:
            return False
        if not self.persistent:
            self.marker = None
        self.fired.set()
        return True

    def tail(self, window: bytes) -> bytes:
        """The bytes to keep so a marker split across two reads is still found."""
        keep = len(self.marker) - 1 if self.marker else 0
        return window[-keep:] if keep > 0 else b""


class _Link:
    """One proxied connection."""

    def __init__(self) -> None:
        self.drop_reply = asyncio.Event()


class CuttingProxy:
    def __init__(self, upstream_port: int, *, host: str = "127.0.0.1") -> None:
        self.host = host
        self.upstream_port = upstream_port
        self.port = 0
        self.reply = Trap()
        self.request_then_reply = Trap()
        self.request = Trap()
        self._block_after = False
        self._rewrites: list[tuple[bytes, bytes]] = []
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"

    async def start(self) -> CuttingProxy:
        self._server = await asyncio.start_server(self._handle, self.host, 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def cut_reply_containing(self, marker: bytes) -> asyncio.Event:
        self.reply.arm(marker)
        return self.reply.fired

    def cut_reply_to_request_containing(
        self, marker: bytes, *, then_block: bool = False
    ) -> asyncio.Event:
        """With ``then_block``, every later request containing ``marker`` is refused (as
        ``block_requests_containing``) from the instant this trap fires."""
        self.request_then_reply.arm(marker)
        self._block_after = then_block
        return self.request_then_reply.fired

    def cut_request_containing(self, marker: bytes) -> asyncio.Event:
        self.request.arm(marker)
        return self.request.fired

    def block_requests_containing(self, marker: bytes) -> asyncio.Event:
        self.request.arm(marker, persistent=True)
        return self.request.fired

    def unblock_requests(self) -> None:
        self.request.disarm()

    def pretend_redis_version(self, major_minor: str, *, actual: str) -> None:
        """Report ``major_minor`` (e.g. "6.0") where the server says ``actual`` ("7.0")."""
        if len(major_minor) != len(actual):
            raise ValueError(f"cannot rewrite version {actual} as {major_minor}: lengths differ")
        self._rewrites.append(
            (f"redis_version:{actual}.".encode(), f"redis_version:{major_minor}.".encode())
        )

    async def close(self) -> None:
        """Stop listening and drop every connection (the handlers then end on their own)."""
        if self._server is not None:
            self._server.close()
        for writer in list(self._writers):
            writer.transport.abort()
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=5)
        if self._server is not None:
            await self._server.wait_closed()

    async def _handle(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self._writers.add(client_w)
        try:
            try:
                up_r, up_w = await asyncio.open_connection(self.host, self.upstream_port)
            except OSError:
                return
            self._writers.add(up_w)
            link = _Link()
            pumps = {
                asyncio.create_task(self._requests(client_r, up_w, link)),
                asyncio.create_task(self._replies(up_r, client_w, link)),
            }
            try:
                await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for pump in pumps:
                    pump.cancel()
                await asyncio.gather(*pumps, return_exceptions=True)
                up_w.transport.abort()
                self._writers.discard(up_w)
        finally:
            client_w.transport.abort()
            self._writers.discard(client_w)
            self._tasks.discard(task)

    async def _requests(
        self, src: asyncio.StreamReader, dst: asyncio.StreamWriter, link: _Link
    ) -> None:
        """Client to server; returning cuts the connection."""
        tail = b""
        with contextlib.suppress(OSError):
            while data := await src.read(65536):
                window = tail + data
                marker = self.request_then_reply.marker
                if marker is not None and self.request_then_reply.hit(window):
                    link.drop_reply.set()
                    if self._block_after:
                        self.request.arm(marker, persistent=True)
                elif self.request.hit(window):
                    return
                tail = max(self.request.tail(window), self.request_then_reply.tail(window), key=len)
                dst.write(data)
                await dst.drain()

    async def _replies(
        self, src: asyncio.StreamReader, dst: asyncio.StreamWriter, link: _Link
    ) -> None:
        """Server to client; returning cuts the connection."""
        tail = b""
        with contextlib.suppress(OSError):
            while data := await src.read(65536):
                window = tail + data
                if link.drop_reply.is_set() or self.reply.hit(window):
                    return
                tail = self.reply.tail(window)
                for old, new in self._rewrites:
                    data = data.replace(old, new)
                dst.write(data)
                await dst.drain()
