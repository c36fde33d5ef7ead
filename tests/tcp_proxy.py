"""A TCP proxy in front of a test redis-server that breaks one connection on purpose.

- ``cut_reply_containing(marker)``: the next reply from the server that contains ``marker`` is
  dropped and that connection is closed on both sides. The command has run in Redis; the client
  only sees a dead connection (what a failover or a network blip does to a command in flight).
- ``cut_request_containing(marker)``: the next request containing ``marker`` is not forwarded
  and its connection is closed (the command fails without running).

Each arms once; ``reply_cut`` / ``request_cut`` are set when it fired.
"""

from __future__ import annotations

import asyncio
import contextlib


class CuttingProxy:
    def __init__(self, upstream_port: int, *, host: str = "127.0.0.1") -> None:
        self.host = host
        self.upstream_port = upstream_port
        self.port = 0
        self.reply_cut = asyncio.Event()
        self.request_cut = asyncio.Event()
        self._markers: dict[bool, bytes | None] = {True: None, False: None}
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

    def cut_reply_containing(self, marker: bytes) -> None:
        self.reply_cut.clear()
        self._markers[True] = marker

    def cut_request_containing(self, marker: bytes) -> None:
        self.request_cut.clear()
        self._markers[False] = marker

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
            pumps = {
                asyncio.create_task(self._pump(client_r, up_w, reply=False)),
                asyncio.create_task(self._pump(up_r, client_w, reply=True)),
            }
            try:
                await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for pump in pumps:
                    pump.cancel()
                await asyncio.gather(*pumps, return_exceptions=True)
                up_w.close()
                self._writers.discard(up_w)
        finally:
            client_w.close()
            self._writers.discard(client_w)
            self._tasks.discard(task)

    async def _pump(
        self, src: asyncio.StreamReader, dst: asyncio.StreamWriter, *, reply: bool
    ) -> None:
        """Copy ``src`` to ``dst``; return (the caller closes both sides) to cut."""
        tail = b""
        with contextlib.suppress(OSError):
            while data := await src.read(65536):
                marker = self._markers[reply]
                if marker is not None:
                    if marker in tail + data:
                        self._markers[reply] = None
                        (self.reply_cut if reply else self.request_cut).set()
                        return
                    tail = (tail + data)[-(len(marker) - 1) :] if len(marker) > 1 else b""
                dst.write(data)
                await dst.drain()
