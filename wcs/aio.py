"""The one bridge between Twisted and asyncio (aiortc runs on the same loop)."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable
from typing import TypeVar

from twisted.internet.defer import Deferred

T = TypeVar("T")


class ReactorError(Exception):
    """Another reactor was installed before wcsvod could install the asyncio one."""


def install_reactor() -> None:
    """Install Twisted's asyncio reactor unless it is already the one.

    Must run before anything imports ``twisted.internet.reactor``; aiortc
    needs the asyncio loop that the reactor drives.
    """
    from twisted.internet import asyncioreactor

    if "twisted.internet.reactor" in sys.modules:
        from twisted.internet import reactor

        if not isinstance(reactor, asyncioreactor.AsyncioSelectorReactor):
            raise ReactorError(
                f"wcsvod needs the asyncio reactor, but {type(reactor).__name__} "
                "is already installed (leave out --reactor, or pass --reactor=asyncio)"
            )
        return
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    asyncioreactor.install(loop)


def loop() -> asyncio.AbstractEventLoop:
    """The asyncio loop the reactor runs on."""
    from twisted.internet import reactor

    return reactor._asyncioEventloop  # type: ignore[attr-defined]


def deferred(awaitable: Awaitable[T]) -> Deferred[T]:
    """asyncio → Twisted: run a coroutine or future, get a Deferred."""
    return Deferred.fromFuture(asyncio.ensure_future(awaitable, loop=loop()))
