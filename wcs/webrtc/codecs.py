"""H.264 profiles for passthrough: answer with the profile the file really has.

aiortc registers only Baseline and Constrained Baseline; a Main or High file
sent under those would be refused or mis-decoded, so the other profiles the
browsers offer are registered here, once.
"""

from __future__ import annotations

from typing import Any

from aiortc import RTCRtpSender
from aiortc.codecs import CODECS
from aiortc.rtcrtpparameters import (
    RTCRtcpFeedback,
    RTCRtpCodecCapability,
    RTCRtpCodecParameters,
)
from aiortc.sdp import H264Profile, SessionDescription, parse_h264_profile_level_id

from wcs.errors import NegotiationError
from wcs.webrtc import internals

# Chromium offers High only as High 4:4:4 Predictive (f4001f), whose decoders
# also decode High, Main and Constrained Baseline.
EXTRA_PROFILES = ("4d001f", "640c1f", "64001f", "f4001f")

# A decoder of the key profile can decode streams of the listed ones.
DECODES = {
    H264Profile.PROFILE_CONSTRAINED_BASELINE: {H264Profile.PROFILE_CONSTRAINED_BASELINE},
    H264Profile.PROFILE_BASELINE: {
        H264Profile.PROFILE_BASELINE,
        H264Profile.PROFILE_CONSTRAINED_BASELINE,
    },
    H264Profile.PROFILE_MAIN: {H264Profile.PROFILE_MAIN, H264Profile.PROFILE_CONSTRAINED_BASELINE},
    H264Profile.PROFILE_CONSTRAINED_HIGH: {
        H264Profile.PROFILE_CONSTRAINED_HIGH,
        H264Profile.PROFILE_CONSTRAINED_BASELINE,
    },
    H264Profile.PROFILE_HIGH: {
        H264Profile.PROFILE_HIGH,
        H264Profile.PROFILE_CONSTRAINED_HIGH,
        H264Profile.PROFILE_MAIN,
        H264Profile.PROFILE_CONSTRAINED_BASELINE,
    },
    H264Profile.PROFILE_PREDICTIVE_HIGH_444: {
        H264Profile.PROFILE_PREDICTIVE_HIGH_444,
        H264Profile.PROFILE_HIGH,
        H264Profile.PROFILE_CONSTRAINED_HIGH,
        H264Profile.PROFILE_MAIN,
        H264Profile.PROFILE_CONSTRAINED_BASELINE,
    },
}


class _DynamicPayloadTypes:
    """96–127 and 35–63: Chromium now numbers codecs in both ranges (RFC 8872)."""

    def __contains__(self, payload_type: object) -> bool:
        return isinstance(payload_type, int) and (
            96 <= payload_type <= 127 or 35 <= payload_type <= 63
        )


def register_profiles() -> None:
    """Add Main, Constrained High and High to aiortc's H.264 entries (idempotent).

    Also lets aiortc answer with the browser's own payload type when it lies
    in 35–63; aiortc only honours 96–127 and would otherwise answer with a
    number the browser uses for something else (its RTX, for instance).
    """
    internals.set_dynamic_payload_types(_DynamicPayloadTypes())
    video = CODECS["video"]
    known = {c.parameters.get("profile-level-id") for c in video if c.mimeType == "video/H264"}
    used = {c.payloadType for c in video if c.payloadType is not None}  # all of them
    payload_type = max(used) + 1
    for profile_level_id in EXTRA_PROFILES:
        if profile_level_id in known:
            continue
        video.append(
            RTCRtpCodecParameters(
                mimeType="video/H264",
                clockRate=90000,
                payloadType=payload_type,
                rtcpFeedback=[
                    RTCRtcpFeedback(type="nack"),
                    RTCRtcpFeedback(type="nack", parameter="pli"),
                    RTCRtcpFeedback(type="goog-remb"),
                ],
                parameters={
                    "level-asymmetry-allowed": "1",
                    "packetization-mode": "1",
                    "profile-level-id": profile_level_id,
                },
            )
        )
        video.append(
            RTCRtpCodecParameters(
                mimeType="video/rtx",
                clockRate=90000,
                payloadType=payload_type + 1,
                parameters={"apt": payload_type},
            )
        )
        payload_type += 2


def profile_of(profile_level_id: str) -> H264Profile | None:
    try:
        return parse_h264_profile_level_id(profile_level_id)[0]
    except ValueError:
        return None


def h264_preferences(file_profile_level_id: str, offered: list[str]) -> list[RTCRtpCodecCapability]:
    """The H.264 capabilities to answer with for this file, best first.

    ``offered`` are the browser's profile-level-ids. The exact profile comes
    first, then any offered profile whose decoders can also decode this one.
    """
    register_profiles()
    mine = profile_of(file_profile_level_id)
    if mine is None:
        return []
    offered_profiles = {profile_of(p) for p in offered}
    capabilities = RTCRtpSender.getCapabilities("video").codecs
    chosen: list[RTCRtpCodecCapability] = []
    for capability in capabilities:
        if capability.mimeType != "video/H264":
            continue
        profile = profile_of(str(capability.parameters.get("profile-level-id", "42e01f")))
        if profile == mine and profile in offered_profiles:
            chosen.insert(0, capability)
        elif (
            profile is not None
            and profile in offered_profiles
            and mine in DECODES.get(profile, set())
        ):
            chosen.append(capability)
    if chosen:
        chosen += [c for c in capabilities if c.mimeType == "video/rtx"]
    return chosen


def opus_preferences() -> list[RTCRtpCodecCapability]:
    return [c for c in RTCRtpSender.getCapabilities("audio").codecs if c.mimeType == "audio/opus"]


def offered_media(offer_sdp: str) -> dict[str, Any]:
    """The offer's audio and video sections that are not rejected, by kind."""
    try:
        offer = SessionDescription.parse(offer_sdp)
    except Exception:
        raise NegotiationError("Invalid SDP offer") from None
    return {m.kind: m for m in offer.media if m.kind in ("audio", "video") and m.port}
