"""WHEP and WHIP sessions: one play or one publication each, made by one HTTP
POST and known afterwards only by the unguessable URL it was answered with.

Each is a :class:`~wcs.signalling.session.Session` with no socket, so it goes
through the WebSocket's own stream requests: the same access rules (the bearer
token as the play token, the hooks told ``method``), caps, registry, transports,
listings and metrics. It ends with its play or publication: a DELETE, the
stream's end, or ICE (a client that left without a DELETE loses consent).

With several workers any of them may take a DELETE or PATCH: the resource's
id names the worker that holds it, and the others ask that one (the hub).
"""

from __future__ import annotations

import hmac
import secrets
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from typing import Any, cast

from twisted.internet.defer import Deferred, fail, maybeDeferred, succeed
from twisted.logger import Logger
from twisted.python.failure import Failure

from wcs.cluster.admissions import Admission
from wcs.cluster.directory import Directory
from wcs.errors import (
    AccessRefused,
    BadRequest,
    LimitReached,
    NotFound,
    PreconditionFailed,
    Unprocessable,
    WcsError,
)
from wcs.signalling.messages import MessageError, StreamRequest
from wcs.signalling.negotiation import Negotiation
from wcs.signalling.requests import StreamRequests
from wcs.signalling.session import Session
from wcs.transports.interfaces import IceFragment

log = Logger()

#: The doors, and whether each publishes.
DOORS = {"WHEP": False, "WHIP": True}
#: What each door's query may ask, as the SDK's playStream/publishStream fields:
#: a play at another size; a publication recorded, or sent on over RTMP.
OPTIONS = {"WHEP": ("width", "height"), "WHIP": ("record", "rtmpUrl")}
#: What other workers are asked for a resource they hold.
ASKED = "whep-resource"
#: Ends a session's play or publication, as the page's stop would.
ENDED = ("STOPPED", "UNPUBLISHED", "FAILED")
NO_SUCH = "no such WHEP/WHIP session (it ended, or never was)"
RESTART = "ICE restart is not supported: start a new session (POST) instead"


def _nowhere(_text: str) -> None:
    """An HTTP session has no socket to send frames to."""


@dataclass(frozen=True)
class SessionUrl:
    """A session's URL as a request names it, and the bearer token it came with."""

    door: str
    name: str
    resource: str
    token: str = ""


class HttpSession(Session):
    """One WHEP or WHIP client's play or publication."""

    def __init__(
        self,
        streams: StreamRequests,
        door: str,
        name: str,
        address: str,
        worker: str,
        token: str,
        on_ended: Callable[[HttpSession], None],
    ) -> None:
        super().__init__(
            send=_nowhere,
            close=lambda reason: None,
            streams=streams,
            peer=address,
            path="/" + door.lower(),
            address=address,
        )
        self.door = door
        self.name = name  # as POSTed (a hook may rename what it plays)
        #: the secret part of its URL, and the worker that holds it
        self.resource = f"{secrets.token_urlsafe(24)}.{worker}"
        #: the ICE session's entity tag (RFC 9725: If-Match on PATCH)
        self.etag = f'"{secrets.token_hex(8)}"'
        custom = {"token": token} if token else {}
        self.connection = {"appKey": "defaultApp", "method": door.lower(), "custom": custom}
        self.token = token
        self.negotiation: Negotiation | None = None
        self.request: StreamRequest | None = None
        #: fires with the SDP answer (kept in ``answer_sdp``), or fails with the refusal
        self.answer: Deferred[str] = Deferred()
        self.answer_sdp = ""
        self._on_ended = on_ended

    def answer_stream(self, request: StreamRequest, sdp: str) -> None:
        if not self.answer.called:
            self.answer_sdp = sdp
            self.answer.callback(sdp)

    def report_stream(
        self,
        request: StreamRequest,
        status: str,
        info: str | None = None,
        *,
        cause: WcsError | None = None,
        **extra: object,
    ) -> None:
        super().report_stream(request, status, info)
        if status not in ENDED:
            return
        if not self.answer.called:
            self.answer.errback(cause if cause is not None else WcsError(info or status))
        self._on_ended(self)


class HttpSessions:
    """This worker's WHEP and WHIP sessions, by resource id."""

    def __init__(self, streams: StreamRequests, admission: Admission, directory: Directory) -> None:
        self.streams = streams
        self.admission = admission
        self.directory = directory
        self._sessions: dict[str, HttpSession] = {}
        directory.answer(ASKED, self._asked)

    def __len__(self) -> int:
        return len(self._sessions)

    def open(
        self,
        door: str,
        name: str,
        offer: tuple[str, bool, bool],
        token: str,
        address: str,
        options: dict[str, str] | None = None,
    ) -> Deferred[HttpSession]:
        """A new session playing or publishing ``name``, once it is answered
        (``session.answer`` has fired); fails with the refusal, having let go
        of everything. ``options``: the door's query (:data:`OPTIONS`)."""
        sdp, has_audio, has_video = offer
        custom = {"token": token} if token else {}
        fields = {key: value for key, value in (options or {}).items() if key in OPTIONS[door]}
        try:
            request = StreamRequest.parse(
                {
                    **fields,
                    "mediaSessionId": str(uuid.uuid4()),
                    "name": name,
                    "published": DOORS[door],
                    "sdp": sdp,
                    "hasAudio": has_audio,
                    "hasVideo": has_video,
                    "custom": custom,
                }
            )
        except MessageError as error:
            return fail(BadRequest(error.info))
        request = replace(request, door=door)

        def entered(refusal: str) -> Deferred[HttpSession]:
            if refusal:
                raise LimitReached.worded(refusal)
            session = HttpSession(
                self.streams, door, name, address, self.directory.worker, token, self._ended
            )
            self._sessions[session.resource] = session
            session.request = request
            allowing = maybeDeferred(self.streams.connect, session)
            allowing.addCallback(self._connected, session)
            allowing.addErrback(self._refused, session)
            return cast("Deferred[HttpSession]", allowing)

        return self.admission.enter(address).addCallback(entered)

    def _connected(self, _: None, session: HttpSession) -> Deferred[HttpSession]:
        session.established = True
        assert session.request is not None
        start = self.streams.publish if session.request.published else self.streams.play
        session.negotiation = start(session, session.request)
        return session.answer.addCallback(lambda _sdp: session)

    def _refused(self, failure: Failure, session: HttpSession) -> Failure:
        self._ended(session)
        return failure

    def _ended(self, session: HttpSession) -> None:
        """Its play or publication is over (or never began): let go of it once."""
        if self._sessions.pop(session.resource, None) is None:
            return
        self.streams.release(session)
        session.closed = True
        self.admission.leave(session.address)

    # --- a resource's methods, wherever it is held

    def delete(self, url: SessionUrl) -> Deferred[None]:
        """End the session's play (STOPPED) or publication (UNPUBLISHED)."""
        return self._at(url, {"op": "delete"})

    def patch(self, url: SessionUrl, fragment: IceFragment, if_match: str | None) -> Deferred[None]:
        """Add trickled candidates to the session's ICE."""
        return self._at(
            url,
            {
                "op": "patch",
                "ifMatch": if_match,
                "fragment": {
                    "ufrag": fragment.ufrag,
                    "pwd": fragment.pwd,
                    "candidates": [list(each) for each in fragment.candidates],
                    "end": fragment.end,
                },
            },
        )

    def _at(self, url: SessionUrl, question: dict[str, Any]) -> Deferred[None]:
        """Do ``question`` here, or ask the worker the id names."""
        _secret, dot, worker = url.resource.partition(".")  # a worker id may hold dots
        if not dot or not worker:
            return fail(NotFound(NO_SUCH))
        question = {**question, **asdict(url)}
        if worker == self.directory.worker:
            return maybeDeferred(self._asked, question)
        return self.directory.ask(worker, ASKED, question).addErrback(self._not_there)

    @staticmethod
    def _not_there(failure: Failure) -> Failure:
        """A worker that is not one of this machine's holds nothing we can reach."""
        if not failure.check(WcsError):
            log.warn("WHEP/WHIP: asking a worker failed: {why}", why=failure.getErrorMessage())
            return Failure(NotFound(NO_SUCH))
        return failure

    def _asked(self, question: dict[str, Any]) -> Deferred[None]:
        """A resource's method, for this worker's session (asked here or by another)."""
        session = self._sessions.get(str(question.get("resource")))
        if (
            session is None
            or session.negotiation is None
            or session.request is None
            or (session.door, session.name) != (question.get("door"), question.get("name"))
        ):
            raise NotFound(NO_SUCH)  # under another door or name: not that URL
        if session.token and not hmac.compare_digest(
            session.token.encode(), str(question.get("token") or "").encode()
        ):
            raise AccessRefused("the session's URL needs the bearer token it was opened with")
        if question.get("op") == "delete":
            self.streams.stop(session, session.request)
            self._ended(session)
            return succeed(None)
        if_match = question.get("ifMatch")
        if if_match == "*":
            raise Unprocessable(RESTART)
        if if_match is not None and if_match != session.etag:
            raise PreconditionFailed(
                f"If-Match {str(if_match)[:80]} is not this session's ICE entity tag"
            )
        given = question["fragment"]
        fragment = IceFragment(
            given["ufrag"],
            given["pwd"],
            tuple((mid, line) for mid, line in given["candidates"]),
            given["end"],
        )
        return session.negotiation.trickle(fragment).addCallback(lambda _: None)
