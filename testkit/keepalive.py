"""A cheap HTTP/1.1 client for load: GETs on one keep-alive connection.

The benches' HLS players and static-file clients are hundreds of these on one
asyncio loop; a full HTTP library per request would cost the load generator
more than the server it measures.
"""

from __future__ import annotations

import asyncio
import re

LENGTH = re.compile(rb"(?i)\r\ncontent-length: *(\d+)")


class KeepAlive:
    """One connection to ``host:port``, opened at the first GET (or :meth:`connect`);
    every body read whole and its bytes counted."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.bytes = 0  # bodies read, all requests
        self.requests = 0
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def connect(self) -> None:
        """Open the connection now (a GET opens it otherwise); OSError if refused."""
        if self._writer is None:
            self._reader, self._writer = await asyncio.open_connection(self.host, self.port)

    async def get(self, path: str) -> tuple[int, bytes]:
        """The status and body of ``GET path`` (the server must say its length)."""
        await self.connect()
        assert self._reader is not None and self._writer is not None
        self._writer.write(f"GET {path} HTTP/1.1\r\nHost: {self.host}\r\n\r\n".encode())
        self.requests += 1
        head = await self._reader.readuntil(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        length = LENGTH.search(head)
        body = await self._reader.readexactly(int(length[1]) if length else 0)
        self.bytes += len(body)
        return status, body

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = self._reader = None
