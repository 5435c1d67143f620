"""Every error a page or a REST caller is told about, each kind a class.

Each carries ``info``: the exact text WCS pages show (``stream.getInfo()``).
The WebSocket side turns any :class:`WcsError` into a FAILED status with
that info; the REST side maps the class to an HTTP status in one table
(:data:`wcs.web.rest.HTTP_STATUS`). Anything else that escapes is a bug.
"""

from __future__ import annotations

#: WCS's standard infos (``STREAM_STATUS_INFO`` in the SDK's constants.js).
FILE_NOT_FOUND = "File not found"
STREAM_NOT_FOUND = "Stream not found"
WRONG_FORMAT = "File has wrong format"
INVALID_NAME = "Invalid stream name"
#: What a page is told when a bug, not its request, ended its stream (the
#: traceback goes to the log).
INTERNAL_ERROR = "Internal error"
#: A peer that never connected (WCS's own words).
ICE_FAILED = "Failed by ICE timeout"
#: Seconds a WebRTC peer may take to connect once answered (WCS's ICE timeout).
ICE_TIMEOUT = 20.0
#: A ``transport: "TCP"`` peer that never connected: its only way was ICE over TCP.
ICE_TCP_FAILED = (
    "Failed by ICE timeout: ICE over TCP found no connection (is the server's "
    "ice_tcp_port reachable from the browser?)"
)
#: A ``transport: "TCP"`` request to a server whose ICE-TCP port is off.
TCP_OFF = "WebRTC over TCP is off on this server (ice_tcp_port=0)"


class WcsError(Exception):
    """A request that cannot be served; ``info`` goes to the page as is."""

    def __init__(self, info: str) -> None:
        super().__init__(info)
        self.info = info

    @property
    def detail(self) -> str:
        """What a REST caller is told: the info, and why when the info alone does not say."""
        return self.info


class NotFound(WcsError):
    """No such file, object or stream."""

    def __init__(self, info: str = FILE_NOT_FOUND) -> None:
        super().__init__(info)


class WrongFormat(WcsError):
    """The file exists but is not an MP4 with H.264 and/or AAC that plays."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"{WRONG_FORMAT}: {reason}")


class InvalidName(WcsError):
    """A name that is refused before anything is opened (a path escape, say)."""

    @classmethod
    def because(cls, reason: str) -> InvalidName:
        return cls(f"{INVALID_NAME}: {reason}")


class Unsupported(WcsError):
    """Something this server does not do: a scheme, a media provider, an operation."""


class NameTaken(WcsError):
    """A stream already runs under that name."""

    def __init__(self, info: str, name: str) -> None:
        super().__init__(info)
        self.name = name


class SourceUnavailable(WcsError):
    """A remote source that refused, stalled or broke (S3)."""


class ClusterUnavailable(WcsError):
    """The server's shared names (the supervisor, or the cluster's Redis) did not
    answer: nothing can be played or started that another worker might share."""

    def __init__(self, why: str) -> None:
        super().__init__(
            f"Cluster unavailable: the server's stream names cannot be reached ({why})"
        )


class RecordingFailed(WcsError):
    """A recording that cannot be made or kept (a full disk, a read-only folder)."""


class BadRequest(WcsError):
    """A REST request whose body or fields cannot be used."""


class MediaTransportRefused(WcsError):
    """An MSE media socket (``connectMediaTransport``) no play may take: one
    that already serves a play, or one too many waiting for plays."""


class NegotiationError(WcsError):
    """An SDP offer that cannot be answered: not a media error, the file is fine."""


class LimitReached(WcsError):
    """A cap of :class:`wcs.limits.Limits` (or a fixed one) would be exceeded;
    the info names its properties key and value, so the operator knows which."""

    def __init__(self, what: str, key: str, value: float) -> None:
        super().__init__(f"Limit reached: {what} ({key}={value:g})")
        self.key = key

    @classmethod
    def worded(cls, info: str) -> LimitReached:
        """A refusal already worded elsewhere (the supervisor's session caps)."""
        error = cls.__new__(cls)
        WcsError.__init__(error, info)
        error.key = ""
        return error


class WrongContentType(BadRequest):
    """A body sent under a media type the endpoint does not take."""


class NotJson(WrongContentType):
    """A REST body sent as anything but ``application/json`` (a browser on any
    page may POST ``text/plain`` without asking; it may not POST JSON)."""


class Conflict(WcsError):
    """A request that does not fit the state of what it names: a WHEP/WHIP
    PATCH whose ``If-Match`` names another ICE session, say."""


class PreconditionFailed(Conflict):
    """An ``If-Match`` that names another ICE session than the resource's."""


class Unprocessable(Conflict):
    """A well-formed request this resource cannot do (an ICE restart)."""


#: WCS's info for a play, publish or session the access rules refuse.
RESTRICTED_ACCESS = "Restricted access"


class AccessRefused(WcsError):
    """The backend (a REST hook) or the play token rule said no.

    ``info`` is WCS's ``Restricted access``, as the SDK's pages compare it;
    ``reason`` says why, for the log and for REST callers."""

    def __init__(self, reason: str) -> None:
        super().__init__(RESTRICTED_ACCESS)
        self.reason = reason

    @property
    def detail(self) -> str:
        return f"{self.info}: {self.reason}"


class Unauthenticated(AccessRefused):
    """Refused for want of credentials (no token where one is required): an
    HTTP caller hears 401 and may try again with some."""
