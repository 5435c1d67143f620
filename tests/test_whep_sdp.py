"""What a WHEP or WHIP client sends, read at the door (wcs/whep/sdp.py)."""

from __future__ import annotations

import pytest

from wcs.errors import BadRequest, WrongContentType
from wcs.whep import sdp

OFFER = (
    "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0 1\r\n"
    "m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:0\r\na=ice-ufrag:abcd\r\n"
    "a=ice-pwd:abcdefghijklmnopqrstuvwx\r\na=fingerprint:sha-256 AA:BB\r\n"
    "m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:1\r\n"
)


def test_an_offer_says_its_kinds() -> None:
    assert sdp.offer(OFFER.encode(), "application/sdp") == (OFFER, True, True)
    video_only = OFFER.replace("m=audio 9 UDP/TLS/RTP/SAVPF 111", "m=application 9 UDP/DTLS/SCTP x")
    assert sdp.offer(video_only.encode(), "Application/SDP; charset=utf-8")[1:] == (False, True)


@pytest.mark.parametrize(("body", "kind", "error", "says"), [
    (OFFER, "application/json", WrongContentType, "not application/json"),
    (OFFER, None, WrongContentType, "not none"),
    ("", "application/sdp", BadRequest, "it is empty"),
    ("hello", "application/sdp", BadRequest, "does not start with v=0"),
    ("v=0\r\nm=application 9 UDP/DTLS/SCTP x\r\n", "application/sdp", BadRequest,
     "no audio or video"),
    (OFFER.replace("a=fingerprint", "a=finger"), "application/sdp", BadRequest, "not WebRTC"),
    (OFFER + "a=" + "x" * 5000 + "\r\n", "application/sdp", BadRequest, "longer than 4096"),
])
def test_a_bad_offer_is_refused_saying_why(body, kind, error, says) -> None:
    with pytest.raises(error, match=says):
        sdp.offer(body.encode(), kind)
    with pytest.raises(BadRequest, match="not UTF-8"):
        sdp.offer(b"v=0\r\n\xff\xfe", "application/sdp")


def test_a_fragment_gives_credentials_candidates_by_section_and_the_end() -> None:
    text = (
        "a=ice-ufrag:EsAw\r\na=ice-pwd:P2uYro0UCOQ4zxjKXaWCBui1\r\n"
        "a=candidate:0 1 udp 1 10.0.0.1 9 typ host\r\n"  # session level: no mid
        "m=audio 9 UDP/TLS/RTP/SAVPF 0\r\na=mid:0\r\n"
        "a=candidate:1387637174 1 udp 2122260223 192.0.2.1 61764 typ host generation 0 "
        "ufrag EsAw network-id 1\r\n"
        "a=candidate:3471623853 1 UDP 2122194687 f5c1.local 54321 typ host\r\n"
        "m=video 9 UDP/TLS/RTP/SAVPF 0\r\na=mid:1\r\n"
        "a=candidate:842163049 1 tcp 1686052607 198.51.100.2 9 typ srflx raddr 0.0.0.0 rport 0 "
        "tcptype active\r\na=end-of-candidates\r\n"
    )
    fragment = sdp.fragment(text.encode(), "application/trickle-ice-sdpfrag")
    assert (fragment.ufrag, fragment.pwd, fragment.end) == (
        "EsAw", "P2uYro0UCOQ4zxjKXaWCBui1", True)
    assert [mid for mid, _ in fragment.candidates] == [None, "0", "0", "1"]
    assert fragment.candidates[1][1].startswith("candidate:1387637174 1 udp")
    just_end = sdp.fragment(b"a=ice-ufrag:EsAw\r\na=end-of-candidates\r\n",
                            "application/trickle-ice-sdpfrag")
    assert just_end.candidates == () and just_end.end and just_end.pwd == ""


@pytest.mark.parametrize(("body", "says"), [
    ("", "no valid a=ice-ufrag"),
    ("a=ice-ufrag:has space\r\n", "no valid a=ice-ufrag"),
    ("a=ice-ufrag:" + "x" * 300 + "\r\n", "no valid a=ice-ufrag"),
    ("a=ice-ufrag:abcd\r\na=ice-pwd:bad pwd!\r\n", "ice-pwd"),
    ("a=ice-ufrag:abcd\r\na=candidate:x\r\n", "not an ICE candidate"),
    ("a=ice-ufrag:abcd\r\na=candidate:1 1 sctp 1 127.0.0.1 9 typ host\r\n",
     "not an ICE candidate"),
    ("a=ice-ufrag:abcd\r\na=candidate:1 1 udp 1 127.0.0.1 999999 typ host\r\n",
     "not an ICE candidate"),
    ("a=ice-ufrag:abcd\r\na=candidate:1 1 udp 1 127.0.0.1 65536 typ host\r\n",
     "not an ICE candidate"),
    ("a=ice-ufrag:abcd\r\na=candidate:1 1 udp 1 127.0.0.1 9 typ bogus\r\n",
     "not an ICE candidate"),
    ("a=ice-ufrag:abcd\r\n" + "a=candidate:1 1 udp 1 127.0.0.1 9 typ host\r\n" * 65,
     "more than 64"),
])
def test_a_bad_fragment_is_refused_saying_why(body, says) -> None:
    with pytest.raises(BadRequest, match=says):
        sdp.fragment(body.encode(), "application/trickle-ice-sdpfrag")


def test_a_fragment_must_come_as_one() -> None:
    with pytest.raises(WrongContentType, match="trickle-ice-sdpfrag"):
        sdp.fragment(b"a=ice-ufrag:abcd\r\n", "application/sdp")
