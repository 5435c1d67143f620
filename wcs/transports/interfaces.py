"""What front doors ask a transport factory for, and get.

Front doors never build transports themselves: they are handed a
:class:`Transports` at start (``wcs.tap`` composes the real one,
:mod:`wcs.transports.factory`) and ask it for a :class:`Player`, a
:class:`Publisher` or a :class:`Recorder`, so they import no aiortc, MSE or
recording code, and no asyncio bridge. Players and recorders are stream
subscribers (:class:`wcs.streams.subscriber.Subscriber`).

Every transport reports its state through one ``on_state(state, info)``
callback: "connected" once it can take media, then at most one of
"stopped" or "failed" with the info for the page.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from twisted.internet.defer import Deferred

from wcs.media.sample import MediaInfo, Sample
from wcs.streams.subscriber import Subscriber

OnState = Callable[[str, "str | None"], None]


@dataclass(frozen=True)
class IceFragment:
    """Trickled ICE (RFC 8840's ``application/trickle-ice-sdpfrag``, as a WHEP or
    WHIP client PATCHes it): the client's credentials, its candidates (the
    ``candidate:...`` attribute values with the ``mid`` of the section they came
    in; None at session level), and whether it said end-of-candidates."""

    ufrag: str
    pwd: str
    candidates: tuple[tuple[str | None, str], ...] = ()
    end: bool = False


class Trickled(Protocol):
    """A WebRTC transport that takes candidates after its answer."""

    def trickle(self, fragment: IceFragment) -> Deferred[None]:
        """Add the fragment's candidates to the ICE session; fails with
        :class:`~wcs.errors.Unprocessable` when it names another ICE session
        (other credentials: an ICE restart, which is not done) or the transport
        takes no candidates (MSE)."""


class Player(Subscriber, Trickled, Protocol):
    """A subscriber that plays to a page: negotiated, then fed."""

    #: Called when the page asks for a keyframe (a browser's PLI); whoever
    #: subscribes the player points it at the stream's ``request_keyframe``.
    on_keyframe_request: Callable[[], None]

    #: Seconds it may take to report "connected" after the answer, and the
    #: FAILED info if it does not (what the page waits for, named).
    connect_deadline: tuple[float, str]

    def answer(self, offer_sdp: str) -> Deferred[str]:
        """The SDP answer for the page's offer (with every candidate: no trickle)."""

    def answered(self) -> None:
        """The page has the answer: connect, and report "connected" when playing can start."""

    def close(self) -> None:
        """Let go of the connection (the stream is left by whoever subscribed)."""


class Publisher(Trickled, Protocol):
    """A page's media coming in; its frames go to ``on_sample`` as received."""

    #: What the page sends, known once the offer is answered.
    info: MediaInfo | None

    #: Seconds it may take to connect after the answer, and the FAILED info if not.
    connect_deadline: tuple[float, str]

    def answer(self, offer_sdp: str) -> Deferred[str]:
        """The SDP answer for the page's offer."""

    def request_keyframe(self) -> None:
        """Ask the page for a keyframe (a viewer joined with nothing to start on)."""

    def flush(self) -> None:
        """Hand on, through ``on_sample``, what is still held (the stream is ending)."""

    def close(self) -> None:
        """Let go of the connection."""


class Recorder(Subscriber, Protocol):
    """A subscriber that writes a stream to a file; done when the stream closes it."""

    #: The file's name in the media folder, as pages link it.
    name: str
    #: Fires with ``name`` once the file is complete, or fails with the reason.
    completed: Deferred[str]


class Transports(Protocol):
    """Makes the transports front doors attach to streams."""

    #: Media providers a page may play with, and publish with.
    play_providers: tuple[str, ...]
    publish_providers: tuple[str, ...]
    #: Whether WebRTC media may go over TCP (an ICE-TCP port is open).
    tcp_offered: bool

    def player(
        self,
        provider: str,
        session_id: str,
        info: MediaInfo,
        label: str,
        on_state: OnState,
        tcp_only: bool = False,
    ) -> Player:
        """A player for one ``playStream`` of session ``session_id``; ``tcp_only``:
        its WebRTC media over TCP only (the SDK's ``transport: "TCP"``)."""

    def publisher(
        self,
        label: str,
        on_sample: Callable[[Sample], None],
        on_state: OnState,
        tcp_only: bool = False,
    ) -> Publisher:
        """A receiver for one ``publishStream``."""

    def recorder(
        self, stream_name: str, media_session_id: str, info: MediaInfo, on_state: OnState
    ) -> Recorder:
        """A recording of ``stream_name``, named by the record template."""

    def media_channel(self, session_id: str, channel: Any) -> None:
        """A session's media socket arrived (the SDK's MSE ``connectMediaTransport``);
        raises :class:`~wcs.errors.MediaTransportRefused` if no play may take it."""

    def media_channel_closed(self, session_id: str, channel: Any) -> None:
        """That media socket is gone."""

    def session_closed(self, session_id: str) -> None:
        """The session is gone: forget whatever waits on its behalf."""
