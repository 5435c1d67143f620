"""Every private part of aiortc (and of aioice and pylibsrtp beneath it) that
wcsvod touches, in one place.

aiortc's public API cannot send one sample to a thousand viewers cheaply, pass
a publisher's frames through undecoded or free a closed peer promptly, so the
modules of :mod:`wcs.webrtc` reach inside it, only through the functions here.
:data:`CONTRACT` names each private attribute with its owner;
``tests/test_webrtc_internals.py`` makes the real objects and checks every one,
failing by name when a release renames or removes it, and
``bench/next_aiortc.py`` runs that test against the next aiortc release.
"""

from __future__ import annotations

import asyncio
import queue
import socket
import threading
import time
from collections.abc import Coroutine, Iterator
from contextlib import contextmanager
from typing import Any, Protocol

import aiortc.rtcrtpreceiver
from aiortc import RTCRtpReceiver, RTCRtpSender, rtp
from aiortc.codecs.h264 import H264Encoder
from aiortc.rtcdtlstransport import RTCCertificate, RTCDtlsTransport
from aiortc.rtcrtpparameters import RTCRtpSendParameters
from aiortc.stats import RTCStatsReport
from pylibsrtp import Session

#: (owner, attribute): every private name used, and whose it is. An owner is a
#: class (its instances carry the attribute) or a module.
CONTRACT: tuple[tuple[str, str], ...] = (
    ("aiortc.rtcrtpsender.RTCRtpSender", "_ssrc"),
    ("aiortc.rtcrtpsender.RTCRtpSender", "_rtx_ssrc"),
    ("aiortc.rtcrtpsender.RTCRtpSender", "_track_id"),
    ("aiortc.rtcrtpsender.RTCRtpSender", "_handle_rtcp_packet"),
    ("aiortc.rtcrtpsender.RTCRtpSender", "_RTCRtpSender__packet_count"),
    ("aiortc.rtcrtpsender.RTCRtpSender", "_RTCRtpSender__octet_count"),
    ("aiortc.rtcrtpreceiver.RTCRtpReceiver", "_RTCRtpReceiver__decoder_queue"),
    ("aiortc.rtcrtpreceiver.RTCRtpReceiver", "_RTCRtpReceiver__remote_streams"),
    ("aiortc.rtcrtpreceiver.RTCRtpReceiver", "_RTCRtpReceiver__rtx_ssrc"),
    ("aiortc.rtcrtpreceiver.RTCRtpReceiver", "_send_rtcp_pli"),
    ("aiortc.rtcrtpreceiver", "decoder_worker"),
    ("aiortc.rtcrtpreceiver", "RemoteBitrateEstimator"),
    ("aiortc.rtcdtlstransport.RTCCertificate", "generateCertificate"),
    ("aiortc.rtcdtlstransport.RTCDtlsTransport", "_tx_srtp"),
    ("aiortc.rtcdtlstransport.RTCDtlsTransport", "_ssl"),
    ("aiortc.rtcdtlstransport.RTCDtlsTransport", "_role"),
    ("aiortc.rtcdtlstransport", "SRTP_AEAD_AES_128_GCM"),
    ("aiortc.rtcdtlstransport", "SRTP_AEAD_AES_256_GCM"),
    ("aiortc.rtcdtlstransport.RTCDtlsTransport", "_stats_id"),
    ("aiortc.rtcdtlstransport.RTCDtlsTransport", "_get_stats"),
    ("aiortc.rtcdtlstransport.RTCDtlsTransport", "_send_rtp"),
    ("aiortc.rtcdtlstransport.RTCDtlsTransport", "_register_rtp_sender"),
    ("aiortc.rtcdtlstransport.RTCDtlsTransport", "_unregister_rtp_sender"),
    ("aiortc.rtcicetransport.RTCIceTransport", "_connection"),
    ("aiortc.rtcpeerconnection.RTCPeerConnection", "_RTCPeerConnection__connect"),
    ("aiortc.rtp", "DYNAMIC_PAYLOAD_TYPES"),
    ("aiortc.codecs.h264.H264Encoder", "_packetize"),
    ("aiortc.codecs.h264.H264Encoder", "_split_bitstream"),
    ("aioice.ice.Connection", "_nominated"),
    ("aioice.ice.Connection", "_check_list"),
    ("aioice.ice.Connection", "_early_checks"),
    ("aioice.ice.Connection", "_protocols"),
    ("aioice.ice.Connection", "_local_candidates"),
    ("pylibsrtp.Session", "_srtp"),
    ("pylibsrtp._binding", "ffi"),
    ("pylibsrtp._binding", "lib"),
)

#: The name aiortc calls a sender's RTCP handler by; :class:`FastSender` overrides it.
SENDER_RTCP_HANDLER = "_handle_rtcp_packet"
#: The name of aiortc's connect task on a peer; :class:`wcs.webrtc.peer.Peer` wraps it.
PEER_CONNECT = "_RTCPeerConnection__connect"


# senders


def sender_ssrcs(sender: RTCRtpSender) -> tuple[int, int]:
    """The SSRCs aiortc chose for a sender: its media's and its retransmissions'."""
    return sender._ssrc, sender._rtx_ssrc


def sender_track_id(sender: RTCRtpSender) -> str:
    return str(sender._track_id)


def sender_counts(sender: RTCRtpSender) -> tuple[int, int]:
    """What aiortc's own send loop has sent (packets, octets): read, never set."""
    return (
        getattr(sender, "_RTCRtpSender__packet_count", 0),
        getattr(sender, "_RTCRtpSender__octet_count", 0),
    )


def adopt_sender(sender: RTCRtpSender, cls: type[RTCRtpSender]) -> None:
    """Make the sender aiortc created for a transceiver an instance of ``cls``
    (a subclass adding no ``__init__`` state aiortc would miss)."""
    sender.__class__ = cls


# DTLS transports


def register_sender(
    dtls: RTCDtlsTransport, sender: RTCRtpSender, parameters: RTCRtpSendParameters
) -> None:
    """Route the RTCP for ``sender``'s SSRCs to it, as aiortc's own send does."""
    dtls._register_rtp_sender(sender, parameters)


def unregister_sender(dtls: RTCDtlsTransport, sender: RTCRtpSender) -> None:
    dtls._unregister_rtp_sender(sender)


def tx_srtp(dtls: RTCDtlsTransport) -> Session:
    """The SRTP session that protects what the transport sends (set once DTLS is up)."""
    return dtls._tx_srtp


def tx_srtp_gcm_key(dtls: RTCDtlsTransport) -> bytes | None:
    """The master key and salt of the transport's sending SRTP session when its
    profile is AES-GCM (RFC 7714), for the C loop to protect with itself; None
    for another profile. Exported again from the DTLS session, as aiortc's
    ``_setup_srtp`` did (it keeps only the libsrtp session made from them)."""
    from aiortc import rtcdtlstransport

    ssl = dtls._ssl
    if ssl is None:  # no DTLS session (never up, or closed)
        return None
    selected = ssl.get_selected_srtp_profile()
    for profile in (rtcdtlstransport.SRTP_AEAD_AES_128_GCM, rtcdtlstransport.SRTP_AEAD_AES_256_GCM):
        if profile.openssl_profile == selected:
            view = ssl.export_keying_material(
                b"EXTRACTOR-dtls_srtp", 2 * (profile.key_length + profile.salt_length)
            )
            return profile.get_key_and_salt(view, 1 if dtls._role == "server" else 0)
    return None


def nominated_route(dtls: RTCDtlsTransport) -> tuple[Any, tuple[str, int]] | None:
    """The STUN protocol (a UDP socket's, or an ICE-TCP candidate) and remote
    address of the ICE pair nominated for RTP, if any."""
    return nominated_pair(dtls.transport._connection)


def nominated_pair(connection: Any) -> tuple[Any, tuple[str, int]] | None:
    """The protocol and remote address of a connection's nominated pair, if any."""
    pair = connection._nominated.get(1)
    if pair is None:
        return None
    return pair.protocol, pair.remote_addr[:2]


def udp_socket(protocol: Any) -> socket.socket:
    """The socket under one of aioice's UDP STUN protocols."""
    sock: socket.socket = protocol.transport.get_extra_info("socket")
    return sock


def transport_stats(dtls: RTCDtlsTransport) -> tuple[str, RTCStatsReport]:
    """The transport's stats id and report, for a sender's getStats."""
    return dtls._stats_id, dtls._get_stats()


def send_rtcp(dtls: RTCDtlsTransport, data: bytes) -> Coroutine[Any, Any, None]:
    """Protect and send RTCP (aiortc's ``_send_rtp`` tells RTP from RTCP)."""
    return dtls._send_rtp(data)


# receivers


def decoder_queue(receiver: RTCRtpReceiver) -> Any:
    return receiver._RTCRtpReceiver__decoder_queue  # type: ignore[attr-defined]


def remote_media_ssrcs(receiver: RTCRtpReceiver) -> list[int]:
    """The SSRCs a receiver has had media from, retransmission streams left out."""
    seen = receiver._RTCRtpReceiver__remote_streams  # type: ignore[attr-defined]
    retransmissions = receiver._RTCRtpReceiver__rtx_ssrc  # type: ignore[attr-defined]
    return [ssrc for ssrc in seen if ssrc not in retransmissions]


def send_pli(receiver: RTCRtpReceiver, ssrc: int) -> Coroutine[Any, Any, None]:
    return receiver._send_rtcp_pli(ssrc)


@contextmanager
def without_bitrate_estimator() -> Iterator[None]:
    """While send-only transceivers are made: their receivers get no bandwidth
    estimator. aiortc gives every video receiver one, with a 1,000-bucket rate
    window: 1,001 objects a viewer (62 % of all it held, walked by every full
    garbage collection), and 13 % of the server's time in a storm of joins, for
    media that never comes. Nothing else runs meanwhile (one thread)."""
    module = aiortc.rtcrtpreceiver
    saved = module.RemoteBitrateEstimator
    module.RemoteBitrateEstimator = _no_estimator  # type: ignore[assignment,misc]
    try:
        yield
    finally:
        module.RemoteBitrateEstimator = saved  # type: ignore[misc]


def _no_estimator() -> None:
    """What a send-only receiver estimates with: nothing (aiortc checks for None)."""


# DTLS

#: How long a process uses its DTLS certificate before it makes another (aiortc's
#: are valid for 30 days; a browser checks only its fingerprint, from the SDP).
CERTIFICATE_LIFE = 86400.0

_certificate: tuple[float, RTCCertificate] | None = None


def process_certificate() -> RTCCertificate:
    """This process's DTLS certificate, made at first use and again each day."""
    global _certificate
    now = time.monotonic()
    if _certificate is None or now - _certificate[0] > CERTIFICATE_LIFE:
        _certificate = (now, RTCCertificate.generateCertificate())
    return _certificate[1]


@contextmanager
def one_certificate() -> Iterator[None]:
    """While a peer connection is made: it takes :func:`process_certificate`
    instead of making a key pair and signing a certificate of its own (about a
    millisecond a peer; a server, like a browser, needs one certificate, not one
    per call). Nothing else runs meanwhile (one thread)."""
    saved = RTCCertificate.__dict__["generateCertificate"]
    certificate = process_certificate()
    RTCCertificate.generateCertificate = classmethod(  # type: ignore[method-assign,assignment]
        lambda _cls: certificate
    )
    try:
        yield
    finally:
        RTCCertificate.generateCertificate = saved  # type: ignore[method-assign]


class DecoderWorker(Protocol):
    """aiortc's decoder thread body (``aiortc.rtcrtpreceiver.decoder_worker``)."""

    def __call__(
        self,
        loop: asyncio.AbstractEventLoop,
        input_q: queue.Queue[Any],
        output_q: asyncio.Queue[Any],
        decode_error: threading.Event,
    ) -> None: ...


def replace_decoder_worker(worker: DecoderWorker) -> DecoderWorker:
    """Install ``worker`` as aiortc's decoder thread body; returns the stock one."""
    stock: DecoderWorker = aiortc.rtcrtpreceiver.decoder_worker
    aiortc.rtcrtpreceiver.decoder_worker = worker
    return stock


# ICE


def ice_connection(dtls: RTCDtlsTransport) -> Any:
    """aioice's connection under a DTLS transport (None once gone)."""
    return getattr(dtls.transport, "_connection", None)


def forget_checks(connection: Any) -> None:
    """Drop a closed connection's candidate pairs (they hold its STUN protocols)."""
    connection._check_list = []
    connection._early_checks.clear()


def add_local_candidate(connection: Any, protocol: Any) -> None:
    """Offer a candidate aioice did not gather (an ICE-TCP one): pairs, checks
    and the answer's candidates all come from these two lists."""
    connection._protocols.append(protocol)
    connection._local_candidates.append(protocol.local_candidate)


def take_protocols(connection: Any) -> list[Any]:
    """A connection's STUN protocols (its sockets), no longer listed by it."""
    protocols = list(connection._protocols)
    connection._protocols.clear()
    return protocols


# codecs and packets


def set_dynamic_payload_types(types: Any) -> None:
    """Which payload types aiortc takes as dynamic (a container of ints)."""
    rtp.DYNAMIC_PAYLOAD_TYPES = types


def h264_payloads(data: bytes) -> tuple[bytes, ...]:
    """An Annex B access unit cut into RTP payloads as aiortc cuts it (an empty
    unit, which a publisher's STAP-A can carry, would break aiortc's cutter)."""
    units = [unit for unit in H264Encoder._split_bitstream(data) if unit]
    return tuple(H264Encoder._packetize(units))


# SRTP


def srtp_protect() -> tuple[str, bool, int]:
    """pylibsrtp's ``srtp_protect`` as the C loop would call it: its signature as
    cffi declares it, whether its status is int-sized, and its address."""
    from pylibsrtp._binding import ffi, lib

    return (
        ffi.typeof(lib.srtp_protect).cname,
        ffi.sizeof("srtp_err_status_t") == ffi.sizeof("int"),
        int(ffi.cast("uintptr_t", ffi.addressof(lib, "srtp_protect"))),
    )


def srtp_context(session: Session) -> int:
    """The address of a session's libsrtp ``srtp_t``, for the C loop."""
    from pylibsrtp._binding import ffi

    return int(ffi.cast("uintptr_t", session._srtp[0]))
