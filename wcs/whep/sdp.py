"""What a WHEP or WHIP client sends, checked before anything is made of it:
the offer (``application/sdp``) and the trickled candidates
(``application/trickle-ice-sdpfrag``, RFC 8840).

Only the shape is checked here, so that a bad body is refused with a reason
(400) at the door; what the media sections carry is the transports' to judge.
"""

from __future__ import annotations

import re

from wcs.errors import BadRequest, WrongContentType
from wcs.transports.interfaces import IceFragment

SDP = "application/sdp"
SDPFRAG = "application/trickle-ice-sdpfrag"
#: Most candidates one PATCH may carry (a browser gathers a handful per network).
MAX_CANDIDATES = 64
#: Longest line of an offer or fragment that is read.
MAX_LINE = 4096

_MEDIA = re.compile(r"^m=(audio|video|application) \d+ \S+ \S", re.MULTILINE)
#: ``candidate:<foundation> <component> <transport> <priority> <address> <port> typ <type>``
_CANDIDATE = re.compile(
    r"^candidate:[!-~]{1,32} \d{1,3} (?i:udp|tcp) \d{1,10} [0-9A-Za-z.:\-]{1,255} \d{1,5} typ "
    r"(?:host|srflx|prflx|relay)(?: [!-~]{1,255})*$"
)
_ICE_CHAR = re.compile(r"^[A-Za-z0-9+/]{1,256}$")


def content_type(header: str | None) -> str:
    """The media type of a ``Content-Type`` header, without its parameters."""
    return (header or "").split(";")[0].strip().lower()


def text_of(body: bytes, header: str | None, wanted: str) -> str:
    """The body as text, if it was sent as ``wanted``."""
    kind = content_type(header)
    if kind != wanted:
        raise WrongContentType(
            f"the body must be sent as Content-Type {wanted}, not {kind or 'none'}"
        )
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise BadRequest(f"the {wanted} body is not UTF-8 text") from None
    if any(len(line) > MAX_LINE for line in text.splitlines()):
        raise BadRequest(f"the {wanted} body has a line longer than {MAX_LINE} characters")
    return text


def offer(body: bytes, header: str | None) -> tuple[str, bool, bool]:
    """The offer, and whether it has audio and video sections; a body that is
    not an SDP offer with media is refused saying what is wrong."""
    text = text_of(body, header, SDP)
    if not text.strip():
        raise BadRequest("the body must be an SDP offer; it is empty")
    if not text.lstrip().startswith("v=0"):
        raise BadRequest("the body is not an SDP offer (it does not start with v=0)")
    kinds = {match.group(1) for match in _MEDIA.finditer(text)}
    if not kinds & {"audio", "video"}:
        raise BadRequest("the SDP offer has no audio or video section")
    if "a=ice-ufrag:" not in text or "a=fingerprint:" not in text:
        raise BadRequest("the SDP offer has no ICE credentials or DTLS fingerprint: not WebRTC")
    return text, "audio" in kinds, "video" in kinds


def fragment(body: bytes, header: str | None) -> IceFragment:
    """A trickle-ice-sdpfrag: its credentials, candidates and end-of-candidates."""
    text = text_of(body, header, SDPFRAG)
    ufrag = pwd = ""
    mid: str | None = None
    candidates: list[tuple[str | None, str]] = []
    end = False
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("a=ice-ufrag:"):
            ufrag = line.removeprefix("a=ice-ufrag:")
        elif line.startswith("a=ice-pwd:"):
            pwd = line.removeprefix("a=ice-pwd:")
        elif line.startswith("m="):
            mid = None
        elif line.startswith("a=mid:"):
            mid = line.removeprefix("a=mid:")[:64]
        elif line.startswith("a=candidate:"):
            candidate = line.removeprefix("a=")
            if not _CANDIDATE.match(candidate) or int(candidate.split()[5]) > 65535:
                raise BadRequest(f"not an ICE candidate: {candidate[:120]!r}")
            candidates.append((mid, candidate))
            if len(candidates) > MAX_CANDIDATES:
                raise BadRequest(f"more than {MAX_CANDIDATES} candidates in one fragment")
        elif line == "a=end-of-candidates":
            end = True
    if not _ICE_CHAR.match(ufrag):
        raise BadRequest("the fragment has no valid a=ice-ufrag line")
    if pwd and not _ICE_CHAR.match(pwd):
        raise BadRequest("the fragment's a=ice-pwd is not valid")
    return IceFragment(ufrag, pwd, tuple(candidates), end)
