"""The WCS signalling frames: defensive parsing in, well-formed frames out.

Everything a client sends is untrusted: any field may be missing, of the
wrong type, or absurdly long.  Parsing never raises anything but
:class:`MessageError`, and the frames built here always carry the ``data``
array that the SDK's handler needs (wcs-protocol.md §1.2).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

from wcs.streams.uri import MAX_URI

#: Longest SDP accepted.
MAX_SDP = 128 * 1024

PROVIDERS = ("WebRTC", "MSE", "WSPlayer")


class MessageError(Exception):
    """A frame or a field that cannot be used.

    ``media_session_id`` is set when the faulty message still names a
    stream, so that the answer can reach that stream as a FAILED status.
    """

    def __init__(self, info: str, media_session_id: str | None = None) -> None:
        super().__init__(info)
        self.info = info
        self.media_session_id = media_session_id


@dataclass(frozen=True)
class Message:
    """One decoded control frame: its name and ``data[0]`` (an object, or empty)."""

    name: str
    body: dict[str, Any]


def parse_frame(payload: bytes, is_binary: bool) -> Message:
    """Decode one text frame ``{"message": name, "data": [obj]}``."""
    if is_binary:
        raise MessageError("binary frames are not used on the signalling socket")
    try:
        decoded = json.loads(payload.decode("utf-8"))
    except UnicodeDecodeError:
        raise MessageError("frame is not UTF-8 text") from None
    except (ValueError, RecursionError) as error:
        raise MessageError(f"frame is not JSON: {str(error)[:80]}") from None
    if not isinstance(decoded, dict):
        raise MessageError("frame is not a JSON object")
    name = decoded.get("message")
    if not isinstance(name, str) or not name or len(name) > 64:
        raise MessageError("frame has no 'message' name")
    data = decoded.get("data", [])
    if data is None:
        data = []
    if not isinstance(data, list):
        raise MessageError(f"{name}: 'data' is not an array")
    first = data[0] if data else None
    if first is None:
        body: dict[str, Any] = {}
    elif isinstance(first, dict):
        body = first
    else:
        raise MessageError(f"{name}: data[0] is not an object")
    return Message(name, body)


# --- typed fields of data[0]


def text_field(
    body: dict[str, Any], key: str, *, limit: int = MAX_URI, default: str | None = None
) -> str | None:
    """A string field; absent gives ``default``, another type or too long is an
    error (longer ones are refused, not cut)."""
    value = body.get(key)
    if value is None:
        return default
    if not isinstance(value, str):
        raise MessageError(f"'{key}' must be a string")
    if len(value) > limit:
        raise MessageError(f"'{key}' is longer than {limit} characters")
    return value


def flag_field(body: dict[str, Any], key: str, default: bool = False) -> bool:
    """A boolean field; the SDK sends real booleans, but "true" strings are accepted."""
    value = body.get(key)
    if value is None:
        return default
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise MessageError(f"'{key}' must be true or false")


def size_field(body: dict[str, Any], key: str) -> int:
    """A width or height: a number or a numeric string (the player sends "640")."""
    value = body.get(key)
    if value is None or value == "":
        return 0
    if isinstance(value, bool):
        raise MessageError(f"'{key}' must be a number")
    if isinstance(value, float) and not math.isfinite(value):
        raise MessageError(f"'{key}' must be a finite number")
    if isinstance(value, (int, float)):
        number = int(value)
    elif isinstance(value, str) and value.strip().isdigit():
        number = int(value.strip())
    else:
        raise MessageError(f"'{key}' must be a number")
    if not 0 <= number <= 16384:
        raise MessageError(f"'{key}' is out of range")
    return number


def transport_field(body: dict[str, Any]) -> str:
    """The SDK's ``transport`` option: "UDP" (the default, ICE picks) or "TCP"."""
    value = body.get("transport")
    if value is None or value == "":
        return "UDP"
    if not isinstance(value, str) or value.upper() not in ("UDP", "TCP"):
        raise MessageError("'transport' must be UDP or TCP")
    return value.upper()


def ignored_fields(body: dict[str, Any]) -> dict[str, str]:
    """The fields of a play or publish that WCS honours and this server cannot,
    set to something that asks for it, each with the reason (for the log)."""
    ignored: dict[str, str] = {}
    for key in ("bitrate", "minBitrate", "maxBitrate", "quality"):
        value = body.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and value:
            ignored[key] = "a file's stream is sent at its own bitrate"
    if body.get("cvoExtension") is True:
        ignored["cvoExtension"] = "video orientation (CVO) is not sent"
    return ignored


@dataclass(frozen=True)
class StreamRequest:
    """``playStream``, ``publishStream``, ``stopStream`` and ``unPublishStream``."""

    media_session_id: str
    name: str
    published: bool = False
    record: bool = False
    media_provider: str = "WebRTC"
    sdp: str = ""
    width: int = 0
    height: int = 0
    has_audio: bool = True
    has_video: bool = True
    custom: dict[str, Any] = field(default_factory=dict)
    rtmp_url: str = ""  # a publication to send on to an RTMP server too
    #: "TCP": WebRTC media over ICE-TCP only (the SDK's TRANSPORT_TYPE); "UDP": either
    transport: str = "UDP"
    #: the HTTP door it came through ("WHEP", "WHIP"), or "" for the WebSocket
    door: str = ""
    #: fields asked for that this server cannot honour, and why
    ignored: dict[str, str] = field(default_factory=dict)

    @classmethod
    def parse(cls, body: dict[str, Any]) -> StreamRequest:
        """Check every field; the error names the stream when it can."""
        media_session_id = text_field(body, "mediaSessionId", limit=128)
        if not media_session_id:
            raise MessageError("'mediaSessionId' is missing")
        try:
            provider = text_field(body, "mediaProvider", default="WebRTC")
            if provider not in PROVIDERS:
                raise MessageError(f"unknown mediaProvider {provider!r}")
            custom = body.get("custom")
            return cls(
                media_session_id=media_session_id,
                name=text_field(body, "name", default="") or "",
                published=flag_field(body, "published"),
                record=flag_field(body, "record"),
                media_provider=provider or "WebRTC",
                sdp=text_field(body, "sdp", limit=MAX_SDP, default="") or "",
                width=size_field(body, "width"),
                height=size_field(body, "height"),
                has_audio=flag_field(body, "hasAudio", True),
                has_video=flag_field(body, "hasVideo", True),
                custom=custom if isinstance(custom, dict) else {},
                rtmp_url=text_field(body, "rtmpUrl", limit=2048, default="") or "",
                transport=transport_field(body),
                ignored=ignored_fields(body),
            )
        except MessageError as error:
            raise MessageError(error.info, media_session_id) from None


# --- frames the server sends


def frame(name: str, *data: Any) -> str:
    """A control frame; ``data`` is always an array, possibly empty."""
    return json.dumps({"message": name, "data": list(data)}, separators=(",", ":"))


def ping() -> str:
    return frame("ping")


def pong() -> str:
    return frame("pong")


def get_user_data(connection: dict[str, Any], auth_token: str, session_id: str) -> str:
    """The reply to ``connection``: its echo plus our token; moves the SDK to ESTABLISHED.

    ``webRTCMetricsServerDescription`` is left out on purpose (it would start
    the SDK's metrics collector).
    """
    echo = {k: v for k, v in connection.items() if k != "webRTCMetricsServerDescription"}
    echo.update(authToken=auth_token, sessionId=session_id, status="ESTABLISHED")
    return frame("getUserData", echo)


def stream_status(
    request: StreamRequest, status: str, info: str | None = None, **extra: Any
) -> str:
    """``notifyStreamStatusEvent`` keyed by the stream's mediaSessionId."""
    event: dict[str, Any] = {
        "mediaSessionId": request.media_session_id,
        "name": request.name,
        "published": request.published,
        "hasAudio": request.has_audio,
        "hasVideo": request.has_video,
        "record": request.record,
        "status": status,
    }
    if info:
        event["info"] = info
    event.update(extra)
    return frame("notifyStreamStatusEvent", event)


def set_remote_sdp(media_session_id: str, sdp: str) -> str:
    """The answer SDP: positional ``[id, sdp]``, not an object (§2.4)."""
    return frame("setRemoteSDP", media_session_id, sdp)


def fail(info: str, **extra: Any) -> str:
    """``fail`` fires the session's WARN callback; with ``apiMethod`` and ``id``
    it also reaches that stream (§2.4)."""
    return frame("fail", {"info": info, **extra})


def data_status(operation_id: Any, status: str, info: str | None = None) -> str:
    event: dict[str, Any] = {"operationId": operation_id, "status": status}
    if info:
        event["info"] = info
    return frame("DataStatusEvent", event)


def available_stream(media_session_id: str, available: bool, info: str) -> str:
    """The status is the *string* "true"/"false": the SDK compares with ``== "true"``."""
    return frame(
        "availableStream",
        {
            "id": media_session_id,
            "status": "true" if available else "false",
            "info": info,
        },
    )


def stream_event(media_session_id: str, kind: str, payload: dict[str, Any]) -> str:
    return frame(
        "notifyStreamEvent",
        {
            "mediaSessionId": media_session_id,
            "type": kind,
            "payload": payload,
        },
    )
