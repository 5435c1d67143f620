"""The fast sender taking over a real aiortc sender, its DTLS side faked: the
socket and SRTP keys it takes when aiortc calls ``send``, the header and
extensions it writes, NACKs answered over RTX (or not), sender reports with
the mapping of the last packet, PLI/FIR to its owner, BYE and nothing more
once stopped. Every packet is read back from a UDP socket on 127.0.0.1."""

from __future__ import annotations

import asyncio
import os
import socket
import struct
import time
from types import SimpleNamespace

import pytest
from aiortc import RTCRtpSender
from aiortc.rtcrtpparameters import (
    RTCRtcpParameters,
    RTCRtpCodecParameters,
    RTCRtpHeaderExtensionParameters,
    RTCRtpSendParameters,
)
from aiortc.rtp import (
    RTCP_PSFB_FIR,
    RTCP_PSFB_PLI,
    RTCP_RTPFB_NACK,
    RtcpByePacket,
    RtcpPacket,
    RtcpPsfbPacket,
    RtcpRtpfbPacket,
    RtcpSdesPacket,
    RtcpSrPacket,
)
from pylibsrtp import Policy, Session

from testkit.harness import run
from wcs.webrtc import sender as sender_module
from wcs.webrtc.sender import (
    ABS_SEND_TIME,
    MID,
    NTP_EPOCH,
    Reports,
    abs_send_time,
    adopt,
    extension_block,
    ntp,
)

KEY = os.urandom(30)
PROFILE = Policy.SRTP_PROFILE_AES128_CM_SHA1_80
#: The profile Chromium and aiortc agree on: the C loop protects it itself.
GCM_KEY = os.urandom(28)
GCM = Policy.SRTP_PROFILE_AEAD_AES_128_GCM


def srtp(gcm: bool) -> tuple[bytes, int]:
    """The server's sending key and profile."""
    return (GCM_KEY, GCM) if gcm else (KEY, PROFILE)
H264, RTX = 102, 103
PAYLOADS = (b"\x7c\x85" + b"a" * 1000, b"\x7c\x45" + b"b" * 500)  # an IDR in two FU-A


def parameters(rtx: bool = True, kind: str = "video", mux: str = "1") -> RTCRtpSendParameters:
    codecs = [
        RTCRtpCodecParameters(
            mimeType="video/H264",
            clockRate=90000,
            payloadType=H264,
            parameters={"packetization-mode": "1"},
        )
    ]
    if kind == "audio":
        codecs = [
            RTCRtpCodecParameters(
                mimeType="audio/opus", clockRate=48000, channels=2, payloadType=111
            )
        ]
    if rtx:
        codecs.append(
            RTCRtpCodecParameters(
                mimeType=f"{kind}/rtx", clockRate=90000, payloadType=RTX, parameters={"apt": H264}
            )
        )
    return RTCRtpSendParameters(
        codecs=codecs,
        headerExtensions=[
            RTCRtpHeaderExtensionParameters(id=1, uri=MID),
            RTCRtpHeaderExtensionParameters(id=3, uri=ABS_SEND_TIME),
        ],
        muxId=mux,
        rtcp=RTCRtcpParameters(cname="viewer-cname"),
    )


class FakeDtls:
    """What the sender takes from aiortc's DTLS transport: the keys, the
    nominated ICE pair's socket, and the way RTCP is sent."""

    state = "connected"
    _stats_id = "transport_1"

    def __init__(self, to: tuple[str, int], nominated: bool = True, gcm: bool = False) -> None:
        key, profile = srtp(gcm)
        policy = Policy(key=key, ssrc_type=Policy.SSRC_ANY_OUTBOUND, srtp_profile=profile)
        policy.allow_repeat_tx = True  # as aiortc sets it
        self._tx_srtp = Session(policy)
        self._role = "server"
        # DTLS's exported keys: the client's key, the server's, the client's salt, the server's
        exported = os.urandom(16) + GCM_KEY[:16] + os.urandom(12) + GCM_KEY[16:]
        self._ssl = SimpleNamespace(
            get_selected_srtp_profile=lambda: (
                b"SRTP_AEAD_AES_128_GCM" if gcm else b"SRTP_AES128_CM_SHA1_80"
            ),
            export_keying_material=lambda label, length: exported[:length],
        )
        self.ice_socket = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.ice_socket.bind(("127.0.0.1", 0))
        pair = SimpleNamespace(
            remote_addr=(*to, "extra"),
            protocol=SimpleNamespace(
                transport=SimpleNamespace(
                    get_extra_info=lambda name: self.ice_socket if name == "socket" else None
                )
            ),
        )
        self.transport = SimpleNamespace(
            _connection=SimpleNamespace(_nominated={1: pair} if nominated else {})
        )
        self.registered: list = []
        self.rtcp: list[bytes] = []

    def _register_rtp_sender(self, sender, parameters) -> None:
        self.registered.append(sender)

    def _unregister_rtp_sender(self, sender) -> None:
        self.registered.remove(sender)

    async def _send_rtp(self, data: bytes) -> None:
        self.rtcp.append(data)

    def _get_stats(self) -> dict:
        return {}


class Browser:
    """The viewer's end: a UDP socket and the SRTP keys to read what arrives."""

    def __init__(self, gcm: bool = False) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(2)
        self.key, self.profile = srtp(gcm)

    def address(self) -> tuple[str, int]:
        return self.sock.getsockname()

    def read(self) -> bytes:
        return self.sock.recv(2048)

    def rtp(self) -> tuple[tuple, bytes, bytes]:
        """One packet: its header fields, its extension block, its payload."""
        keys = Session(
            Policy(key=self.key, ssrc_type=Policy.SSRC_ANY_INBOUND, srtp_profile=self.profile)
        )
        plain = keys.unprotect(self.read())
        header = struct.unpack("!BBHII", plain[:12])
        if header[0] & 0x10:
            length = 4 + 4 * int.from_bytes(plain[14:16], "big")
            return header, plain[12 : 12 + length], plain[12 + length :]
        return header, b"", plain[12:]

    def rtcp(self) -> list:
        keys = Session(
            Policy(key=self.key, ssrc_type=Policy.SSRC_ANY_INBOUND, srtp_profile=self.profile)
        )
        return RtcpPacket.parse(keys.unprotect_rtcp(self.read()))

    def nothing(self) -> bool:
        self.sock.settimeout(0.2)
        try:
            self.sock.recv(2048)
        except TimeoutError:
            return True
        finally:
            self.sock.settimeout(2)
        return False


def started(kind: str = "video", rtx: bool = True, native: bool = True, mux: str = "1",
            gcm: bool = False):
    """A browser, and a fast sender that aiortc has just told DTLS is up."""
    browser = Browser(gcm)
    dtls = FakeDtls(browser.address(), gcm=gcm)
    asked: list[str] = []
    fast = adopt(
        RTCRtpSender(kind, dtls), "test viewer", lambda: asked.append("keyframe"), native=native
    )
    return browser, dtls, fast, asked


def on_a_loop(test):
    """Run ``test`` (a coroutine function) on an event loop of its own."""

    def runner(*args, **kwargs):
        return run(test(*args, **kwargs), timeout=30)

    runner.__name__ = test.__name__
    return runner


def test_abs_send_time_is_6_18_fixed_point_seconds_in_24_bits():
    assert abs_send_time(0.0) == (NTP_EPOCH * 262144) & 0xFFFFFF
    assert (abs_send_time(1.25) - abs_send_time(1.0)) % 2**24 == 262144 // 4
    assert abs_send_time(64.0) == abs_send_time(0.0)  # wraps every 64 s
    assert 0 <= abs_send_time(1.7e9 + 0.123) < 2**24


def test_ntp_is_32_32_fixed_point_since_1900():
    assert ntp(0.0) == NTP_EPOCH << 32
    assert ntp(0.5) == (NTP_EPOCH << 32) + 2**31
    assert ntp(1.0) - ntp(0.0) == 2**32


@pytest.mark.parametrize(
    "kind, mux, block, at",
    [
        # mid "1" as id 1, abs-send-time as id 3 (its 3 bytes after the id byte): as aiortc writes
        ("video", "1", b"\xbe\xde\x00\x02\x10\x31\x32\x00\x00\x00\x00\x00", 7),
        ("audio", "1", b"\xbe\xde\x00\x01\x10\x31\x00\x00", -1),  # no abs-send-time for audio
        ("video", "abc", b"\xbe\xde\x00\x02\x12abc\x32\x00\x00\x00", 9),
        ("audio", "", b"", -1),  # nothing to write: no block at all
    ],
)
def test_the_extension_block_is_what_aiortc_writes(kind, mux, block, at):
    assert extension_block(parameters(kind=kind, mux=mux), kind == "video") == (block, at)


@pytest.mark.parametrize("native", [True, False])
def test_once_dtls_is_up_samples_go_out_with_the_viewers_header(native):
    @on_a_loop
    async def scenario():
        browser, dtls, fast, _ = started(native=native)
        assert fast.need_key and fast.stream is None
        await fast.send(parameters())
        assert fast.ready.is_set() and dtls.registered == [fast]
        fast.send_sample((b"\x41delta",), 0, False)  # no keyframe yet: nothing sent
        assert fast.stream.packets == 0
        fast.send_sample(PAYLOADS, 90000, True)
        first, second = browser.rtp(), browser.rtp()
        await fast.stop()
        return fast, first, second

    fast, first, second = scenario()
    (b0, pt0, seq0, ts0, ssrc0), extension, payload = first
    (b1, pt1, seq1, ts1, ssrc1), _, payload1 = second
    assert (b0, b1) == (0x90, 0x90)  # version 2 with an extension block
    assert (pt0, pt1) == (H264, 0x80 | H264)  # the marker on the sample's last packet
    assert (ssrc0, ssrc1) == (fast.ssrc, fast.ssrc) and seq1 == (seq0 + 1) & 0xFFFF
    assert ts0 == ts1
    assert extension[:7] == b"\xbe\xde\x00\x02\x10\x31\x32" and len(extension) == 12
    assert (payload, payload1) == PAYLOADS


def test_a_second_send_changes_nothing():
    @on_a_loop
    async def scenario():
        _, dtls, fast, _ = started()
        await fast.send(parameters())
        stream = fast.stream
        await fast.send(parameters(rtx=False))
        same = fast.stream is stream and fast._rtx_pt == RTX and dtls.registered == [fast]
        await fast.stop()
        return same

    assert scenario()


def test_without_a_nominated_pair_it_does_not_start():
    @on_a_loop
    async def scenario():
        dtls = FakeDtls(("127.0.0.1", 9), nominated=False)
        fast = adopt(RTCRtpSender("video", dtls), "test", lambda: None)
        with pytest.raises(ConnectionError, match="no ICE pair was nominated"):
            await fast.send(parameters())
        return fast.stream, fast.ready.is_set()

    assert scenario() == (None, False)


@pytest.mark.parametrize("gcm", [False, True])
@pytest.mark.parametrize("rtx", [True, False])
def test_a_nack_is_answered_from_the_shared_payloads(rtx, gcm):
    @on_a_loop
    async def scenario():
        browser, _, fast, _ = started(rtx=rtx, gcm=gcm)
        assert fast.stream is None
        await fast.send(parameters(rtx=rtx))
        fast.send_sample(PAYLOADS, 90000, True)
        sent = [browser.rtp(), browser.rtp()]
        lost = sent[1][0][2]
        await fast.handle_rtcp(
            RtcpRtpfbPacket(
                fmt=RTCP_RTPFB_NACK,
                ssrc=1,
                media_ssrc=fast.ssrc,
                lost=[lost, (lost + 500) & 0xFFFF],
            )
        )
        again = browser.rtp()
        nothing_else = browser.nothing()  # a packet no longer kept is not made up
        assert fast.stream.own_srtp is gcm  # AES-GCM: the C loop's own SRTP
        await fast.stop()
        return fast, sent, again, nothing_else

    fast, sent, again, nothing_else = scenario()
    (_, pt, seq, ts, ssrc), extension, payload = sent[1]
    (_, rpt, rseq, rts, rssrc), rextension, rpayload = again
    assert rts == ts and nothing_else
    assert rextension[:7] == extension[:7]  # abs-send-time is fresh; the rest is the same
    if rtx:  # its own payload type, SSRC and numbering; the lost number first
        assert (rpt, rssrc) == (0x80 | RTX, fast.rtx_ssrc)
        assert rpayload == seq.to_bytes(2, "big") + payload
    else:  # the same packet again
        assert (rpt, rseq, rssrc, rpayload) == (pt, seq, ssrc, payload)


@pytest.mark.parametrize("fmt", [RTCP_PSFB_PLI, RTCP_PSFB_FIR])
def test_a_pli_or_fir_asks_the_owner_for_a_keyframe(fmt):
    @on_a_loop
    async def scenario():
        _, _, fast, asked = started()
        await fast.send(parameters())
        await fast.handle_rtcp(RtcpPsfbPacket(fmt=fmt, ssrc=1, media_ssrc=fast.ssrc))
        await fast.stop()
        return asked

    assert scenario() == ["keyframe"]


def test_an_owner_that_fails_on_a_keyframe_request_does_not_break_rtcp_handling():
    @on_a_loop
    async def scenario():
        browser = Browser()
        dtls = FakeDtls(browser.address())

        def broken():
            raise RuntimeError("owner bug")

        fast = adopt(RTCRtpSender("video", dtls), "test", broken)
        await fast.send(parameters())
        await fast.handle_rtcp(
            RtcpPsfbPacket(fmt=RTCP_PSFB_PLI, ssrc=1, media_ssrc=fast.ssrc)
        )
        fast.send_sample(PAYLOADS, 0, True)  # and it goes on sending
        packets = fast.stream.packets
        await fast.stop()
        return packets

    assert scenario() == 2


def test_a_sender_report_maps_the_last_packet_and_names_the_cname():
    @on_a_loop
    async def scenario():
        browser, _, fast, _ = started()
        await fast.send(parameters())
        fast.report()  # before any packet: no mapping to give, nothing sent
        nothing = browser.nothing()
        fast.send_sample(PAYLOADS, 90000, True)
        browser.rtp(), browser.rtp()
        fast.report()
        report = browser.rtcp()
        stream = fast.stream
        mapping = (stream.last_time, stream.last_rtp, stream.packets, stream.octets)
        await fast.stop()
        return fast, nothing, report, mapping

    fast, nothing, report, (last_time, last_rtp, packets, octets) = scenario()
    assert nothing
    sr, sdes = report
    assert isinstance(sr, RtcpSrPacket) and sr.ssrc == fast.ssrc
    assert sr.sender_info.ntp_timestamp == ntp(last_time)
    assert (
        sr.sender_info.rtp_timestamp,
        sr.sender_info.packet_count,
        sr.sender_info.octet_count,
    ) == (last_rtp, 2, sum(map(len, PAYLOADS)))
    assert (packets, octets) == (2, sum(map(len, PAYLOADS)))
    assert isinstance(sdes, RtcpSdesPacket)
    assert sdes.chunks[0].ssrc == fast.ssrc and sdes.chunks[0].items == [(1, b"viewer-cname")]


def test_stats_count_what_the_stream_sent():
    @on_a_loop
    async def scenario():
        _browser, _, fast, _ = started()  # its socket open while we send
        await fast.send(parameters())
        fast.send_sample(PAYLOADS, 0, True)
        report = await fast.getStats()
        await fast.stop()
        return [s for s in report.values() if s.type == "outbound-rtp"], fast

    [stats], fast = scenario()
    assert (stats.packetsSent, stats.bytesSent, stats.ssrc, stats.kind) == (
        2,
        sum(map(len, PAYLOADS)),
        fast.ssrc,
        "video",
    )


def test_stopped_it_says_bye_and_sends_nothing_more():
    @on_a_loop
    async def scenario():
        browser, dtls, fast, _ = started()
        await fast.send(parameters())
        stream = fast.stream
        await fast.stop()
        fast.send_sample(PAYLOADS, 0, True)
        fast.retransmit(stream.seq)
        fast.report()
        await fast.send(parameters())  # aiortc's connect task, late: never starts again
        return fast, dtls, stream, browser.nothing()

    fast, dtls, stream, nothing = scenario()
    assert nothing and stream.closed and fast.stream is None and dtls.registered == []
    [bye] = RtcpPacket.parse(dtls.rtcp[0])
    assert isinstance(bye, RtcpByePacket) and bye.sources == [fast.ssrc]
    assert fast not in sender_module.REPORTS._due


def test_reports_go_on_for_the_others_when_one_sender_fails():
    class Counting:
        label = "counting"

        def __init__(self, broken: bool) -> None:
            self.broken, self.reports = broken, 0

        def report(self) -> None:
            self.reports += 1
            if self.broken:
                raise RuntimeError("report bug")

    @on_a_loop
    async def scenario():
        reports = Reports()
        broken, fine, gone = Counting(True), Counting(False), Counting(False)
        for each in (broken, fine, gone):
            reports.add(each)
        reports.discard(gone)
        await asyncio.sleep(3.2)  # each reported every 0.5-1.5 s
        for each in (broken, fine):
            reports.discard(each)
        await asyncio.sleep(0.2)
        return broken.reports, fine.reports, gone.reports, reports._task.done()

    broken, fine, gone, finished = scenario()
    assert broken >= 2 and fine >= 2 and gone == 0
    assert finished  # no sender left: the timer ends


def test_remb_and_receiver_reports_reach_the_owner_as_bandwidth_feedback():
    """REMB for this track (another application's FCI, or another SSRC's, is no
    feedback); each receiver report's loss from its cumulative counts (its own
    fraction_lost jumps about under loss), with the rate sent since the last one."""
    from aiortc.rtp import (
        RTCP_PSFB_APP,
        RtcpReceiverInfo,
        RtcpRrPacket,
        pack_remb_fci,
    )

    def report(ssrc, lost, highest, fraction=0):
        return RtcpRrPacket(ssrc=1, reports=[RtcpReceiverInfo(
            ssrc=ssrc, fraction_lost=fraction, packets_lost=lost, highest_sequence=highest,
            jitter=0, lsr=0, dlsr=0)])

    @on_a_loop
    async def scenario():
        _, _, fast, _ = started()
        heard = []
        fast.on_feedback = lambda remb, loss, rate: heard.append((remb, loss, rate))
        await fast.send(parameters())
        for fci in (pack_remb_fci(812_000, [fast.ssrc]), pack_remb_fci(5, [fast.ssrc + 1]),
                    b"GOOG-something"):
            await fast.handle_rtcp(RtcpPsfbPacket(fmt=RTCP_PSFB_APP, ssrc=1, media_ssrc=0,
                                                  fci=fci))
        await fast.handle_rtcp(report(fast.ssrc, 0, 1000, fraction=64))
        fast.send_sample(PAYLOADS, 0, True)
        await asyncio.sleep(0.25)
        await fast.handle_rtcp(report(fast.ssrc, 30, 1100, fraction=255))
        await fast.handle_rtcp(report(fast.ssrc + 1, 90, 1200))  # another track's
        fast.on_feedback = lambda remb, loss, rate: 1 / 0  # an owner's bug stays its own
        await fast.handle_rtcp(report(fast.ssrc, 30, 1200))
        await fast.stop()
        return heard

    heard = scenario()
    assert heard[0] == (812_000, None, None)  # (the mantissa keeps 18 bits: exact here)
    assert heard[1] == (None, 0.25, None)  # the first report: its own fraction
    remb, loss, rate = heard[2]
    assert remb is None and loss == pytest.approx(0.3)  # 30 of 100
    assert 4_000 < rate < 60_000  # 1,572 bytes (two packets with headers) in 0.25 s
    assert len(heard) == 3


def test_a_packet_nacked_again_and_again_is_resent_once_per_interval():
    """A browser repeats its NACKs until the packet comes; answering each one
    multiplied the load on a congested link (about 8,400 resends a second)."""
    @on_a_loop
    async def scenario():
        browser, _, fast, _ = started()
        await fast.send(parameters())
        fast.send_sample(PAYLOADS, 90000, True)
        first = browser.rtp()[0][2]
        browser.rtp()
        nack = RtcpRtpfbPacket(fmt=RTCP_RTPFB_NACK, ssrc=1, media_ssrc=fast.ssrc,
                               lost=[first, (first + 1) & 0xFFFF])
        for _ in range(5):
            await fast.handle_rtcp(nack)
        resent = [browser.rtp(), browser.rtp()]
        at_once = browser.nothing()
        await asyncio.sleep(sender_module.RESEND_INTERVAL + 0.05)
        await fast.handle_rtcp(nack)
        later = [browser.rtp(), browser.rtp()]
        await fast.stop()
        return resent, at_once, later

    resent, at_once, later = scenario()
    assert at_once  # five NACKs: each packet once
    assert len(resent) == len(later) == 2  # and again once the interval has passed


def test_a_nack_flood_is_bounded():
    sender = SimpleNamespace(_resent={})
    now = 100.0
    may = sender_module.FastSender._may_resend
    answered = sum(may(sender, seq, now) for seq in range(3 * sender_module.RESEND_MEMORY))
    assert answered == sender_module.RESEND_MEMORY
    assert len(sender._resent) == sender_module.RESEND_MEMORY
    later = now + sender_module.RESEND_INTERVAL + 0.01
    assert may(sender, 5, later)  # the interval over, the memory is cleared
    assert len(sender._resent) == 1


@pytest.mark.parametrize("cname", [b"", b"a", b"ab", b"abc", b"abcd", b"viewer-cname", b"x" * 40])
def test_a_sender_report_is_the_bytes_aiortc_would_make(cname):
    from aiortc.rtp import RtcpSdesPacket, RtcpSenderInfo, RtcpSourceInfo

    from wcs.webrtc.sender import sender_report

    counts = (0x1_0000_0005, 0x2_0000_0007)  # past 32 bits: counts wrap
    theirs = bytes(
        RtcpSrPacket(
            ssrc=0xDEADBEEF,
            sender_info=RtcpSenderInfo(
                ntp_timestamp=0x1122334455667788,
                rtp_timestamp=0x99AABBCC,
                packet_count=counts[0] & 0xFFFFFFFF,
                octet_count=counts[1] & 0xFFFFFFFF,
            ),
        )
    )
    if cname:
        theirs += bytes(
            RtcpSdesPacket(chunks=[RtcpSourceInfo(ssrc=0xDEADBEEF, items=[(1, cname)])])
        )
    ours = sender_report(0xDEADBEEF, 0x1122334455667788, 0x99AABBCC, *counts, cname)
    assert ours == theirs
    assert len(RtcpPacket.parse(ours)) == (2 if cname else 1)


def test_reports_are_made_only_for_the_senders_due_and_again_after_each():
    class Counting:
        label = "counting"

        def __init__(self) -> None:
            self.times: list[float] = []

        def report(self) -> None:
            self.times.append(time.monotonic())

    @on_a_loop
    async def scenario():
        reports = Reports()
        senders = [Counting() for _ in range(50)]
        for sender in senders:
            reports.add(sender)
        reports.discard(senders[0])
        reports.add(senders[1])  # added again: due once, at its new time
        await asyncio.sleep(4.0)
        for sender in senders:
            reports.discard(sender)
        return senders

    senders = scenario()
    assert senders[0].times == []
    for sender in senders[1:]:
        gaps = [b - a for a, b in zip(sender.times, sender.times[1:])]
        assert 2 <= len(sender.times) <= 8 and all(0.4 <= gap <= 1.7 for gap in gaps), sender.times
