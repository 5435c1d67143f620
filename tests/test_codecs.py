"""Answering with the file's own H.264 profile, and reading what an offer holds."""

from __future__ import annotations

import pytest
from aiortc import rtp

from wcs.errors import NegotiationError
from wcs.webrtc import codecs

#: What Chromium offers for H.264 (it offers High only as High 4:4:4 Predictive).
CHROMIUM = ["42001f", "42e01f", "4d001f", "f4001f"]


def first_profile(file_profile: str, offered: list[str]) -> str | None:
    chosen = codecs.h264_preferences(file_profile, offered)
    h264 = [c for c in chosen if c.mimeType == "video/H264"]
    return str(h264[0].parameters["profile-level-id"]) if h264 else None


@pytest.mark.parametrize("file_profile, offered, answer", [
    ("42e01e", CHROMIUM, "42e01f"),  # Constrained Baseline as such
    ("4d401e", CHROMIUM, "4d001f"),  # Main as Main
    ("64001f", CHROMIUM, "f4001f"),  # High as the 4:4:4 profile, whose decoders take it
    ("64001f", ["64001f", "f4001f"], "64001f"),  # High as High when offered
    ("64001f", ["42e01f"], None),  # a Baseline-only browser cannot play High
    ("4d401e", ["42e01f", "42001f"], None),
    ("zzzzzz", CHROMIUM, None),
])
def test_the_answer_prefers_the_files_profile(file_profile, offered, answer):
    assert first_profile(file_profile, offered) == answer


def test_rtx_follows_the_chosen_codecs():
    chosen = codecs.h264_preferences("4d401e", CHROMIUM)
    assert chosen[-1].mimeType == "video/rtx"
    assert codecs.h264_preferences("4d401e", ["42e01f"]) == []


def test_chromium_payload_types_in_35_to_63_are_dynamic():
    codecs.register_profiles()
    assert all(pt in rtp.DYNAMIC_PAYLOAD_TYPES for pt in (35, 41, 63, 96, 127))
    assert not any(pt in rtp.DYNAMIC_PAYLOAD_TYPES for pt in (0, 8, 34, 64, 95, 128, "96"))


def test_registering_is_idempotent():
    codecs.register_profiles()
    from aiortc.codecs import CODECS
    count = len(CODECS["video"])
    codecs.register_profiles()
    assert len(CODECS["video"]) == count


OFFER = "\r\n".join([
    "v=0", "o=- 1 2 IN IP4 127.0.0.1", "s=-", "t=0 0", "a=group:BUNDLE 0 1",
    "m=audio 9 UDP/TLS/RTP/SAVPF 111", "c=IN IP4 0.0.0.0", "a=mid:0", "a=recvonly",
    "a=rtcp-mux", "a=ice-ufrag:abcd", "a=ice-pwd:abcdefghijklmnopqrstuvwx",
    "a=fingerprint:sha-256 " + ":".join(["AB"] * 32), "a=setup:actpass",
    "a=rtpmap:111 opus/48000/2",
    "m=video {video_port} UDP/TLS/RTP/SAVPF 102", "c=IN IP4 0.0.0.0", "a=mid:1", "a=recvonly",
    "a=rtcp-mux", "a=ice-ufrag:abcd", "a=ice-pwd:abcdefghijklmnopqrstuvwx",
    "a=fingerprint:sha-256 " + ":".join(["AB"] * 32), "a=setup:actpass",
    "a=rtpmap:102 H264/90000",
    "a=fmtp:102 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f", ""])


def test_offered_media_leaves_out_rejected_sections():
    assert set(codecs.offered_media(OFFER.format(video_port=9))) == {"audio", "video"}
    assert set(codecs.offered_media(OFFER.format(video_port=0))) == {"audio"}


def test_an_unreadable_offer_is_a_negotiation_error():
    with pytest.raises(NegotiationError) as refused:
        codecs.offered_media("v=0\r\nm=video nonsense\r\n")
    assert refused.value.info == "Invalid SDP offer"
