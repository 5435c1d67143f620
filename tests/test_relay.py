"""Published streams between workers: the relay's two ends over in-memory transports."""

from __future__ import annotations

import json
import struct

from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

from wcs.cluster import relay
from wcs.cluster.relay import RelayReceiver, RelaySender, RelayService, pack, unpack
from wcs.media.sample import AudioInfo, MediaInfo, Sample, VideoInfo
from wcs.streams.stream import PublishedStream

INFO = MediaInfo(0.0, VideoInfo(640, 360, 30.0, "42e01f"), AudioInfo(48000, 2, b"\x12\x10"),
                 bitrate=280_000)  # (a file's: the ladder judges rungs by it on either side)


def frames(transport: StringTransport) -> list[bytes]:
    data, found = transport.value(), []
    while data:
        (length,) = struct.unpack(">I", data[:4])
        found.append(data[4:4 + length])
        data = data[4 + length:]
    transport.clear()
    return found


def framed(frame: bytes) -> bytes:
    return struct.pack(">I", len(frame)) + frame


def video(n: int, key: bool = False) -> Sample:
    return Sample("video", b"frame%d" % n, n * 3000, 90000, n / 30, key, "h264")


class Published:
    def __init__(self) -> None:
        self.asked = 0
        self.ended: list = []
        self.clock = Clock()
        self.stream = PublishedStream("cam", INFO, self.ask, self.ended.append, self.clock)

    def ask(self) -> None:
        self.asked += 1


def sender(streams: dict, secret: str = "s3cret") -> tuple[RelaySender, StringTransport]:
    service = RelayService(Clock(), "127.0.0.1", "127.0.0.1", None)  # type: ignore[arg-type]
    service.secret = "s3cret"
    service.find_published = streams.get
    side = RelaySender(service)
    transport = StringTransport()
    side.makeConnection(transport)
    side.dataReceived(framed(b"H" + json.dumps({"name": "cam", "secret": secret}).encode()))
    return side, transport


def test_samples_round_trip():
    for sample in (video(7, True), Sample("audio", b"o", 960, 48000, 0.02, True, "opus"),
                   Sample("audio", b"a", 1024, 44100, 0.023, True, "aac")):
        assert unpack(pack(sample)) == sample


def test_a_wrong_secret_or_an_unknown_name_is_refused():
    published = Published()
    side, transport = sender({"cam": published.stream}, secret="guess")
    [end] = frames(transport)
    assert end[:1] == b"E" and json.loads(end[1:])["info"] == "wrong secret"
    assert transport.disconnecting and not published.stream.broadcast
    side, transport = sender({})
    assert json.loads(frames(transport)[0][1:])["info"] == "Stream not found"


def test_a_hello_too_long_or_too_late_drops_the_connection():
    clock = Clock()
    service = RelayService(clock, "127.0.0.1", "127.0.0.1", None)  # type: ignore[arg-type]
    side = RelaySender(service)
    transport = StringTransport()
    side.makeConnection(transport)
    side.dataReceived(struct.pack(">I", 10 * 2**20) + b"H" * 1000)
    assert transport.disconnecting
    silent = StringTransport()
    RelaySender(service).makeConnection(silent)
    clock.advance(relay.HELLO_TIMEOUT - 0.1)
    assert not silent.disconnecting
    clock.advance(0.2)
    assert silent.disconnecting and not clock.getDelayedCalls()


def test_the_sender_forwards_from_a_keyframe_and_skips_while_the_socket_is_full():
    published = Published()
    side, transport = sender({"cam": published.stream})
    hello = frames(transport)[0]
    assert relay.described(json.loads(hello[1:])) == INFO
    assert published.asked == 1  # no GOP cached: the page is asked for a keyframe
    stream = published.stream
    stream.send(video(0))  # not a keyframe: nothing yet
    stream.send(video(1, True))
    stream.send(video(2))
    assert [unpack(f).data for f in frames(transport)] == [b"frame1", b"frame2"]
    side.pauseProducing()  # the other worker reads slowly: a burst still goes out...
    stream.send(video(3))
    assert [unpack(f).data for f in frames(transport)] == [b"frame3"]
    side.held = relay.PAUSED_ALLOWANCE  # ...up to its allowance
    stream.send(video(4))  # skipped
    side.resumeProducing()
    stream.send(video(5))  # skipped: it waits for the next keyframe
    stream.send(video(6, True))
    assert [unpack(f).data for f in frames(transport)] == [b"frame6"]
    published.clock.advance(1)  # (keyframe requests are spaced out)
    side.dataReceived(framed(b"K"))
    assert published.asked == 2
    stream.terminate("Stopped by publisher stop")
    end = frames(transport)[-1]
    assert json.loads(end[1:]) == {"info": "Stopped by publisher stop", "failed": False}


def test_the_receiver_feeds_its_stream_and_ends_it_as_told():
    ended: list = []
    local = PublishedStream("cam", None, lambda: None, ended.append, Clock())
    side = RelayReceiver("cam", "s3cret", local)
    transport = StringTransport()
    side.makeConnection(transport)
    assert json.loads(frames(transport)[0][1:]) == {"name": "cam", "secret": "s3cret"}
    side.dataReceived(framed(b"H" + json.dumps(relay.describe(INFO)).encode()))
    assert side.described.called and local.info == INFO
    got = []

    class Viewer:
        pressed_join = True

        def deliver(self, sample):
            got.append(sample)

        def keyframe_wanted(self):
            return not got

        def closed(self, info, failed):
            got.append((info, failed))

    local.subscribe(Viewer())
    assert frames(transport) == [b"K"]  # the viewer's keyframe request goes upstream
    side.dataReceived(framed(pack(video(1, True))))
    side.dataReceived(framed(b"E" + json.dumps({"info": "Stopped by publisher stop",
                                                 "failed": False}).encode()))
    assert got == [video(1, True), ("Stopped by publisher stop", False)]
    assert ended == [local] and transport.disconnecting


def test_a_lost_relay_fails_its_viewers_and_the_last_viewer_leaving_closes_it():
    local = PublishedStream("cam", None, lambda: None, lambda _: None, Clock())
    side = RelayReceiver("cam", "s", local)
    side.makeConnection(StringTransport())
    side.dataReceived(framed(b"H" + json.dumps(relay.describe(INFO)).encode()))
    side.connectionLost()
    assert local.closed and local.ending == (relay.RELAY_LOST, True)

    local = PublishedStream("cam", None, lambda: None, lambda _: None, Clock())
    side = RelayReceiver("cam", "s", local)
    transport = StringTransport()
    side.makeConnection(transport)
    side.dataReceived(framed(b"H" + json.dumps(relay.describe(INFO)).encode()))
    viewer = type("V", (), {"pressed_join": True, "deliver": lambda s, x: None,
                            "keyframe_wanted": lambda s: False,
                            "closed": lambda s, i, f: None})()
    local.subscribe(viewer)
    local.unsubscribe(viewer)
    assert transport.disconnecting
    side.connectionLost()
    assert local.ending == ("Stopped: no viewer left", False)


def test_a_bad_frame_drops_the_relay():
    local = PublishedStream("cam", None, lambda: None, lambda _: None, Clock())
    side = RelayReceiver("cam", "s", local)
    transport = StringTransport()
    side.makeConnection(transport)
    side.dataReceived(framed(b"H{not json"))
    assert transport.disconnecting
