"""One signalling session: the WCS conversation with one browser tab.

The session knows the protocol (which message gets which answer) but not the
socket: it is handed a ``send`` and a ``close(reason)`` callable, so it can be
driven by the Autobahn protocol in production and by plain calls in unit tests.
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import Callable
from typing import Any, Protocol

from twisted.internet.defer import Deferred, maybeDeferred
from twisted.logger import Logger
from twisted.python.failure import Failure

from wcs.errors import INTERNAL_ERROR, AccessRefused, WcsError
from wcs.metrics import METERS
from wcs.signalling import messages
from wcs.signalling.messages import Message, MessageError, StreamRequest
from wcs.streams.uri import MAX_URI

log = Logger()

SIP_MESSAGES = frozenset({"call", "answer", "hangup", "hold", "unhold", "transfer", "sendDtmf"})
#: The own player's controls of a personal play (not WCS's), and what each does.
CONTROLS = {"seekStream": "seek", "pauseStream": "pause", "resumeStream": "resume"}
QUIET_MESSAGES = frozenset(
    {"pong", "sendStreamEvent", "pushLogs", "submitBugReport", "sessionDebug"}
)


class StreamHandler(Protocol):
    """What a session needs from the streams side (the stream front door)."""

    def play(self, session: Session, request: StreamRequest) -> object: ...

    def publish(self, session: Session, request: StreamRequest) -> object: ...

    def stop(self, session: Session, request: StreamRequest) -> None: ...

    def connect(self, session: Session) -> Deferred[None]: ...

    def available(self, name: str) -> Deferred[tuple[bool, str]]: ...

    def snapshot(self, session: Session, media_session_id: str, name: str) -> Deferred[bytes]: ...

    def control(
        self, session: Session, media_session_id: str, action: str, position: object
    ) -> Deferred[dict[str, Any]]: ...

    def release(self, session: Session) -> None: ...

    def media_transport(self, owner: Session, media: Session) -> None: ...

    def media_transport_misrouted(self, token: str, info: str) -> None: ...

    def media_transport_refused(self, owner: Session, info: str) -> None: ...


class Session:
    """State and answers for one browser session."""

    def __init__(
        self,
        send: Callable[[str], None],
        close: Callable[[str], None],
        streams: StreamHandler,
        peer: str = "?",
        path: str = "/",
        channel: Any = None,
        lookup: Callable[[str], Session | None] = lambda token: None,
        address: str = "?",
        auth_token: str | None = None,
        elsewhere: Callable[[str], bool] = lambda token: False,
    ) -> None:
        """``lookup`` finds this worker's session of an ``authToken``;
        ``elsewhere`` takes a media socket whose token names another worker's
        session (True: it was sent there, or refused)."""
        self._send = send
        self._close = close
        self.streams = streams
        self.channel = channel  # this socket as a binary media channel (MSE)
        self._lookup = lookup
        self._elsewhere = elsewhere
        self.media_owner: Session | None = None
        self.peer = peer
        self.address = address  # the client's IP, for the access hooks
        self.path = path
        self.id = str(uuid.uuid4())
        self.auth_token = auth_token or str(uuid.uuid4())
        self.established = False
        self.connecting = False  # a ``connection`` waits for the access rules
        self.closed = False
        self._ignored: set[str] = set()  # fields already logged as ignored
        self.connection: dict[str, Any] = {}
        self.missed_pings = 0
        self._warned: set[str] = set()

    # --- wire

    def _note_ignored(self, message: str, ignored: dict[str, str]) -> None:
        """Log, once per session and field, what a page asked for that is not done."""
        for key, why in ignored.items():
            if key not in self._ignored:
                self._ignored.add(key)
                log.info(
                    "session {session}: {message} '{key}' ignored: {why}",
                    session=self.id,
                    message=message,
                    key=key,
                    why=why,
                )

    def send(self, text: str) -> None:
        if not self.closed:
            self._send(text)

    def receive(self, payload: bytes, is_binary: bool) -> None:
        """Handle one frame; nothing a client sends can raise out of here."""
        self.missed_pings = 0
        try:
            message = messages.parse_frame(payload, is_binary)
        except MessageError as error:
            self._refuse(None, error)
            return
        try:
            self._dispatch(message)
        except MessageError as error:
            self._refuse(message.name, error)
        except Exception:
            log.failure(
                "session {session}: {message} failed", session=self.id, message=message.name
            )
            self.send(messages.fail(f"{message.name}: internal error"))

    def answer_stream(self, request: StreamRequest, sdp: str) -> None:
        """The SDP answer to a play's or publication's offer (``setRemoteSDP``)."""
        self.send(messages.set_remote_sdp(request.media_session_id, sdp))

    def report_stream(
        self,
        request: StreamRequest,
        status: str,
        info: str | None = None,
        *,
        cause: WcsError | None = None,
        **extra: object,
    ) -> None:
        """Send one stream status to the page, and log it (one line per change);
        ``cause``, the refusal behind a FAILED, is for HTTP doors (a page has the info)."""
        log.info(
            "session {session} stream {media_session} ({name}): {status}{info}",
            session=self.id,
            media_session=request.media_session_id,
            name=request.name,
            status=status,
            info=f" ({info})" if info else "",
        )
        if status == "FAILED":
            METERS.failed(info)
        self.send(messages.stream_status(request, status, info, **extra))

    def oversized(self, size: int, limit: int) -> None:
        """A frame larger than the limit was discarded unread."""
        self._refuse(
            None, MessageError(f"message of {size} bytes discarded: larger than {limit} bytes")
        )

    def _refuse(self, name: str | None, error: MessageError) -> None:
        """Log a bad message and answer it the way the protocol allows."""
        log.warn(
            "session {session}: bad {message} message: {info}",
            session=self.id,
            message=name or "",
            info=error.info,
        )
        if error.media_session_id is not None:
            METERS.failed(error.info)
            self.send(
                messages.frame(
                    "notifyStreamStatusEvent",
                    {
                        "mediaSessionId": error.media_session_id,
                        "status": "FAILED",
                        "info": error.info,
                    },
                )
            )
        else:
            self.send(messages.fail(error.info))

    # --- messages

    def _dispatch(self, message: Message) -> None:
        name, body = message.name, message.body
        if name == "connection":
            self._on_connection(body)
        elif name == "connectMediaTransport":
            self._on_media_transport(body)
        elif name == "ping":
            self.send(messages.pong())
        elif name in QUIET_MESSAGES:
            pass
        elif not self.established:
            raise MessageError(f"{name} before connection")
        elif name in ("playStream", "publishStream"):
            request = StreamRequest.parse(body)
            self._note_ignored(name, request.ignored)
            handler = self.streams.play if name == "playStream" else self.streams.publish
            handler(self, request)
        elif name in ("stopStream", "unPublishStream"):
            self.streams.stop(self, StreamRequest.parse(body))
        elif name == "availableStream":
            self._on_available(body)
        elif name == "sendData":
            operation = body.get("operationId")
            if (
                not isinstance(operation, (str, int))
                or isinstance(operation, bool)
                or (isinstance(operation, str) and len(operation) > 128)
            ):
                raise MessageError("sendData: 'operationId' must be a short string or a number")
            self.send(messages.data_status(operation, "ACCEPTED"))
        elif name == "snapshot":
            self._on_snapshot(body)
        elif name in CONTROLS:
            self._on_control(name, body)
        elif name in SIP_MESSAGES:
            raise MessageError(f"{name}: SIP calls are not supported by this server")
        elif name not in self._warned:
            self._warned.add(name)
            log.info(
                "session {session}: unknown message {message!r} ignored",
                session=self.id,
                message=name,
            )

    def _on_connection(self, body: dict[str, Any]) -> None:
        if self.established or self.connecting:
            raise MessageError("connection sent twice")
        app_key = messages.text_field(body, "appKey", default="defaultApp")
        self.connection = dict(body, appKey=app_key)
        self.connecting = True
        maybeDeferred(self.streams.connect, self).addCallbacks(
            self._connected, self._connect_refused
        )

    def _connected(self, _: None) -> None:
        self.connecting = False
        if self.closed:
            return
        self.established = True
        log.info(
            "session {session} established from {peer} on {path} (app {app})",
            session=self.id,
            peer=self.peer,
            path=self.path,
            app=self.connection["appKey"],
        )
        self.send(messages.get_user_data(self.connection, self.auth_token, self.id))

    def _connect_refused(self, failure: Failure) -> None:
        """The access rules said no: say why, then close (the SDK shows DISCONNECTED)."""
        self.connecting = False
        if isinstance(failure.value, AccessRefused):
            log.info(
                "session {session} from {peer} refused: {why}",
                session=self.id,
                peer=self.peer,
                why=failure.value.reason,
            )
            info = failure.value.info
        else:
            log.failure("session {session}: connect failed", failure, session=self.id)
            info = INTERNAL_ERROR
        self.send(messages.fail(info))
        self._close(info)

    def _on_media_transport(self, body: dict[str, Any]) -> None:
        """The SDK's second socket for MSE media, known only by its authToken."""
        token = messages.text_field(body, "authToken", limit=128) or ""
        owner = self._lookup(token)
        if (
            owner is None
            and not self.established
            and self.media_owner is None
            and self._elsewhere(token)
        ):
            return
        if owner is None or owner is self or self.established:
            log.info(
                "session {session}: media transport with an unknown token refused", session=self.id
            )
            self._close("unknown media token")
            return
        self.media_owner = owner
        log.info(
            "session {session} is the media transport of session {owner}",
            session=self.id,
            owner=owner.id,
        )
        self.streams.media_transport(owner, self)

    def _on_available(self, body: dict[str, Any]) -> None:
        media_session_id = messages.text_field(body, "mediaSessionId", limit=128) or ""
        name = messages.text_field(body, "name") or ""

        def answer(result: tuple[bool, str]) -> None:
            self.send(messages.available_stream(media_session_id, *result))

        maybeDeferred(self.streams.available, name).addCallback(answer).addErrback(
            lambda failure: log.failure(
                "session {session}: availableStream failed", failure, session=self.id
            )
        )

    def _on_snapshot(self, body: dict[str, Any]) -> None:
        """``snapshotCompleted`` with a base64 PNG of the stream's picture, or
        ``snapshotFailed`` with why (the SDK's ``stream.snapshot()``)."""
        media_session_id = messages.text_field(body, "mediaSessionId", limit=128)
        name = messages.text_field(body, "name", limit=MAX_URI, default="") or ""
        if not media_session_id:
            raise MessageError("snapshot: 'mediaSessionId' is missing")

        def taken(png: bytes) -> None:
            self.send(
                messages.stream_event(
                    media_session_id,
                    "snapshotCompleted",
                    {"snapshot": base64.b64encode(png).decode("ascii")},
                )
            )

        def failed(failure: Failure) -> None:
            if isinstance(failure.value, WcsError):
                info = failure.value.info
            else:
                log.failure(
                    "session {session}: snapshot of {name!r} failed",
                    failure,
                    session=self.id,
                    name=name,
                )
                info = INTERNAL_ERROR
            self.send(messages.stream_event(media_session_id, "snapshotFailed", {"info": info}))

        maybeDeferred(self.streams.snapshot, self, media_session_id, name).addCallbacks(
            taken, failed
        )

    def _on_control(self, name: str, body: dict[str, Any]) -> None:
        """``seekStream`` {mediaSessionId, position (s)}, ``pauseStream`` and
        ``resumeStream`` {mediaSessionId}: the play's status (PAUSED, PLAYING)
        and ``seeked`` event say it was done; ``seekFailed`` (``pauseFailed``,
        ``resumeFailed``) says why not, and the play goes on as it was."""
        action = CONTROLS[name]
        media_session_id = messages.text_field(body, "mediaSessionId", limit=128)
        if not media_session_id:
            raise MessageError(f"{name}: 'mediaSessionId' is missing")

        def failed(failure: Failure) -> None:
            if isinstance(failure.value, WcsError):
                info = failure.value.info
            else:
                log.failure(
                    "session {session}: {message} failed", failure, session=self.id, message=name
                )
                info = INTERNAL_ERROR
            self.send(messages.stream_event(media_session_id, f"{action}Failed", {"info": info}))

        maybeDeferred(
            self.streams.control, self, media_session_id, action, body.get("position")
        ).addErrback(failed)

    # --- life

    def tick(self, probes: int) -> None:
        """One ping period: ping, or drop a client silent for ``probes`` periods."""
        if self.missed_pings >= probes:
            log.info(
                "session {session}: no answer to {n} pings, closing", session=self.id, n=probes
            )
            self._close("ping timeout")
            return
        self.missed_pings += 1
        self.send(messages.ping())

    def released(self, reason: str) -> None:
        """The socket is gone: give back everything this session held."""
        if self.closed:
            return
        self.closed = True
        self.streams.release(self)
        log.info("session {session} closed ({reason})", session=self.id, reason=reason)
