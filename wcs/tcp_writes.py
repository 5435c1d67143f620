"""Writing a broadcast's bytes to many TCP connections: at once when nothing waits.

Twisted's ``transport.write`` queues the bytes and asks the reactor to watch the
socket for room; the next turn of the loop sends them and stops watching. For a
viewer that keeps up, that is two changes of the poller's interest and a wake-up
for every sample it is sent: with a thousand MSE viewers, most of the server's
time. :func:`write_now` sends at once when the connection has nothing queued (what
the kernel does not take, and any error, is left to Twisted's own write, which
queues it and finds the error as it would have).
"""

from __future__ import annotations

from typing import Any

from twisted.internet import tcp


def write_now(transport: Any, *parts: bytes) -> None:
    """``transport.writeSequence(parts)``, sent now (gathered by the kernel, not
    joined here) when the connection is a plain TCP one with nothing queued."""
    if (type(transport) is tcp.Server or type(transport) is tcp.Client) and _idle(transport):
        try:
            sent = transport.socket.sendmsg(parts)
        except OSError:  # full (EAGAIN), or broken: Twisted's write finds out which
            sent = 0
        for index, part in enumerate(parts):
            if sent < len(part):
                transport.writeSequence([part[sent:], *parts[index + 1 :]])
                return
            sent -= len(part)
        return
    transport.writeSequence(parts)


def _idle(transport: Any) -> bool:
    """Whether a connection can be written to and has nothing queued."""
    return bool(
        transport.connected
        and not transport.disconnecting
        and not transport._writeDisconnected
        and not transport._tempDataLen
        and transport.offset == len(transport.dataBuffer)
    )
