"""A publishing page's peer with real aiortc offers (no browser, no media
flowing): what it answers and refuses, the samples it makes of received
frames (times from the first, past the 32-bit wrap; keyframes from the IDR;
Opus also as AAC), its states, and its close."""

from __future__ import annotations

import asyncio
import queue
from collections.abc import Iterator
from fractions import Fraction

import av
import pytest
from aiortc import RTCPeerConnection, RTCRtpSender

from testkit.harness import run
from tests.test_packetizer import encode_h264
from wcs import aio
from wcs.errors import ICE_FAILED, NegotiationError
from wcs.media.sample import Sample
from wcs.webrtc import ice, publisher
from wcs.webrtc.publisher import Encoded, WebRTCPublisher


@pytest.fixture(autouse=True)
def on_loopback(monkeypatch) -> Iterator[None]:
    """Candidates on 127.0.0.1; ``wcs.aio`` bridges to the test's own loop (no reactor)."""
    monkeypatch.setattr(aio, "loop", asyncio.get_running_loop)
    ice.announce(["127.0.0.1"])
    try:
        yield
    finally:
        ice.announce([])


async def offer(video: str | None = "H264", audio: bool = True, data: bool = False) -> str:
    """A page's offer as aiortc makes it (no candidates: none are needed to answer)."""
    page = RTCPeerConnection()
    if video:
        transceiver = page.addTransceiver("video", direction="sendonly")
        wanted = "VP8" if video == "VP9" else video
        transceiver.setCodecPreferences(
            [
                c
                for c in RTCRtpSender.getCapabilities("video").codecs
                if c.mimeType == f"video/{wanted}"
            ]
        )
    if audio:
        page.addTransceiver("audio", direction="sendonly")
    if data:
        page.createDataChannel("chat")
    sdp = (await page.createOffer()).sdp
    await page.close()
    return sdp.replace("VP8/90000", "VP9/90000") if video == "VP9" else sdp


class Owner:
    def __init__(self) -> None:
        self.samples: list[Sample] = []
        self.states: list[tuple] = []

    def made(self, label: str = "publish 'cam'") -> WebRTCPublisher:
        return WebRTCPublisher(label, self.samples.append, lambda *state: self.states.append(state))


def answered(made: WebRTCPublisher, sdp: str):
    """``answer``'s Deferred, awaited on the loop."""
    return made.answer(sdp).asFuture(asyncio.get_running_loop())


def test_an_h264_and_opus_offer_is_answered_with_both_and_says_what_it_will_send():
    async def scenario():
        owner = Owner()
        made = owner.made()
        answer = await answered(made, await offer())
        info = made.info
        made.close()
        await asyncio.sleep(0.1)
        return answer, info, made

    answer, info, made = run(scenario(), timeout=60)
    assert "H264/90000" in answer and "opus/48000" in answer
    assert "a=recvonly" in answer and "a=sendrecv" not in answer
    assert "127.0.0.1" in answer  # a candidate the page can reach
    assert info.video.profile_level_id == "42e01f" and info.video.width == 0
    assert (info.audio.sample_rate, info.audio.channels) == (48000, 2)
    assert len(info.audio.aac_config) >= 2 and info.duration == 0.0  # an AudioSpecificConfig
    assert made.pc is None  # closed: the peer let go of


def test_a_vp8_only_offer_is_answered_with_vp8_and_re_encoded_to_h264():
    async def scenario():
        made = Owner().made()
        answer = await answered(made, await offer("VP8", audio=False))
        info, vp8 = made.info, made._vp8
        made.close()
        return answer, info, vp8

    answer, info, vp8 = run(scenario(), timeout=60)
    assert "VP8/90000" in answer and "H264" not in answer
    assert info.video.profile_level_id == "42e01f" and info.audio is None
    assert vp8 is not None


@pytest.mark.parametrize(
    "kind, info",
    [
        ("no media", "The offer has no audio or video to publish"),
        ("vp9 only", "Publishing needs H.264 or VP8 video; the offer has neither"),
    ],
)
def test_offers_it_cannot_take_are_refused_saying_why(kind, info):
    async def scenario():
        sdp = await (
            offer(None, audio=False, data=True) if kind == "no media" else offer("VP9", audio=False)
        )
        made = Owner().made()
        try:
            await answered(made, sdp)
        except NegotiationError as error:
            return error.info
        finally:
            made.close()
        return None

    assert run(scenario(), timeout=60) == info


@pytest.mark.parametrize(
    "sdp", ["", "hello", "v=0\r\n" + "m=video 9 x\r\n" * 2000, "\x00" * 100_000]
)
def test_a_malformed_offer_is_a_negotiation_error(sdp):
    async def scenario():
        made = Owner().made()
        try:
            await answered(made, sdp)
        except NegotiationError:
            return "refused"
        finally:
            made.close()
        return "answered"

    assert run(scenario(), timeout=60) == "refused"


def opus_packets(count: int) -> list[bytes]:
    encoder = av.CodecContext.create("libopus", "w")
    encoder.sample_rate, encoder.layout, encoder.format = 48000, "stereo", "s16"
    encoder.time_base = Fraction(1, 48000)
    encoder.open()
    packets = []
    for n in range(count):
        frame = av.AudioFrame(format="s16", layout="stereo", samples=960)
        frame.planes[0].update(bytes(frame.planes[0].buffer_size))
        frame.sample_rate, frame.pts = 48000, n * 960
        packets += [bytes(p) for p in encoder.encode(frame)]
    return packets


def test_received_frames_become_samples_timed_from_the_first():
    async def scenario():
        owner = Owner()
        made = owner.made()
        await answered(made, await offer())
        idr, delta = encode_h264(2)
        base = 2**32 - 3000  # the page's clock wraps after the first frame
        made._emit("video", 90000, Encoded(idr, base))
        made._emit("video", 90000, Encoded(delta, 0))
        made._emit("video", 90000, Encoded(delta, 3000))
        for n, packet in enumerate(opus_packets(60)):
            made._emit("audio", 48000, Encoded(packet, 123456 + n * 960))
        made.flush()
        made.close()
        return owner.samples, idr, delta

    samples, idr, delta = run(scenario(), timeout=60)
    video = [s for s in samples if s.kind == "video"]
    assert [(s.pts, s.keyframe, s.codec, s.clock) for s in video] == [
        (0, True, "h264", 90000),
        (3000, False, "h264", 90000),
        (6000, False, "h264", 90000),
    ]
    assert [s.data for s in video] == [idr, delta, delta]  # as received: Annex B untouched
    assert video[1].time == pytest.approx(3000 / 90000)
    opus = [s for s in samples if s.codec == "opus"]
    assert [s.pts for s in opus] == [n * 960 for n in range(60)]
    aac = [s for s in samples if s.codec == "aac"]
    assert aac and all(s.kind == "audio" for s in aac)
    assert sum(1024 for _ in aac) >= 60 * 960 * 0.8  # the Opus, once, as AAC (and flushed)


def test_states_connected_once_then_failed_with_why():
    class Pc:
        connectionState = "new"

    owner = Owner()
    made = owner.made()
    made.pc = Pc()
    for state in ("connecting", "connected", "connected", "failed", "closed"):
        made.pc.connectionState = state
        made._state_changed()
    assert owner.states == [
        ("connected", None),
        ("failed", "Failed by peer connection: the publisher's connection was lost"),
    ]


def test_a_publisher_that_closes_its_connection_has_stopped():
    """A DTLS close from the page's side (a WHIP client's stop) is a stop, not a loss."""

    class Pc:
        connectionState = "new"

    owner = Owner()
    made = owner.made()
    made.pc = Pc()
    for state in ("connecting", "connected", "closed", "failed"):
        made.pc.connectionState = state
        made._state_changed()
    assert owner.states == [("connected", None), ("stopped", None)]


def test_a_page_that_never_connected_fails_by_ice_and_a_connect_error_says_what():
    class Pc:
        connectionState = "failed"

    owner = Owner()
    made = owner.made()
    made.pc = Pc()
    made._state_changed()
    assert owner.states == [("failed", ICE_FAILED)]
    other = Owner()
    again = other.made()
    again._connect_failed(OSError("no route to host"))
    again._connect_failed(OSError("twice"))
    assert other.states == [("failed", "Failed by peer connection: no route to host")]
    third = Owner()
    third.made()._connect_failed(TimeoutError())
    assert third.states == [("failed", "Failed by peer connection: TimeoutError")]


def test_closed_it_tells_and_hands_on_nothing_more():
    async def scenario():
        owner = Owner()
        made = owner.made()
        await answered(made, await offer())
        made.close()
        made._emit("video", 90000, Encoded(encode_h264(1)[0], 0))
        made._fail("late")
        made.request_keyframe()  # no receiver any more: nothing to ask
        await asyncio.sleep(0.2)
        return owner, made

    owner, made = run(scenario(), timeout=60)
    assert owner.samples == [] and owner.states == []
    assert made.pc is None and made._video_receiver is None


def test_a_publishers_receiver_hands_its_frames_on_undecoded():
    async def scenario():
        loop = asyncio.get_running_loop()
        incoming: queue.Queue = queue.Queue()
        outgoing: asyncio.Queue = asyncio.Queue()
        publisher._passthrough_queues.add(incoming)

        class Frame:
            data, timestamp = b"\x00\x00\x00\x01\x65raw", 1234

        incoming.put(("H264 codec", Frame()))
        incoming.put(None)
        worker = loop.run_in_executor(
            None, publisher._decoder_worker, loop, incoming, outgoing, None
        )
        first, last = await outgoing.get(), await outgoing.get()
        await worker
        return first, last

    first, last = run(scenario(), timeout=30)
    assert isinstance(first, Encoded) and (first.data, first.timestamp) == (
        b"\x00\x00\x00\x01\x65raw",
        1234,
    )
    assert last is None
