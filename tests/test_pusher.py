"""A push's life on a fake clock: it starts at a keyframe with timestamps
from 0, tries again after 1, 2, 4 s when a connection drops, gives up on a
refusal, and ends when the server stops reading."""

from __future__ import annotations

from twisted.internet.defer import fail, succeed
from twisted.internet.error import ConnectionDone
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure

from wcs.media.sample import AudioInfo, MediaInfo, Sample, VideoInfo
from wcs.push.pusher import PUBLISH_WAIT, STALLED, Push
from wcs.push.rtmp import ChunkReader, RtmpError, target
from wcs.streams.media_sessions import MediaSession

INFO = MediaInfo(10.0, VideoInfo(640, 360, 30.0, "42e01f"), AudioInfo(48000, 2, b"\x11\x90"))
SPS = b"\x67\x42\xe0\x1f\x8c\x8d"
PPS = b"\x68\xce\x3c\x80"


def video(pts: int, keyframe: bool) -> Sample:
    units = [SPS, PPS, b"\x65frame"] if keyframe else [b"\x41frame"]
    data = b"".join(b"\x00\x00\x00\x01" + unit for unit in units)
    return Sample("video", data, pts, 90000, pts / 90000, keyframe, "h264")


def audio(pts: int, codec: str = "aac") -> Sample:
    return Sample("audio", b"aac!", pts, 48000, pts / 48000, True, codec)


class World:
    def __init__(self, retries: int = 3, refuse: int = 0) -> None:
        self.clock = Clock()
        self.ended: list[Push] = []
        self.connects = 0
        self.refuse = refuse  # connects refused before one succeeds
        self.transports: list[StringTransport] = []
        self.push = Push(MediaSession("m", "show", False, "RTMP", "rest"),
                         target("rtmp://127.0.0.1/live", "show"), INFO, self.clock,
                         self.ended.append, retries, self.connect)

    def connect(self, reactor, rtmp, protocol):
        self.connects += 1
        if self.connects <= self.refuse:
            return fail(ConnectionRefusedError("refused"))
        transport = StringTransport()
        protocol.makeConnection(transport)
        self.transports.append(transport)
        return succeed(protocol)

    def publish(self) -> None:
        """The server side says yes at once (the handshake is skipped)."""
        self.push.protocol.state = "publishing"
        self.push._publishing()
        self.transports[-1].clear()

    def sent(self) -> list[tuple[int, int, bytes]]:
        buffer = bytearray(self.transports[-1].value())
        reader = ChunkReader()
        reader.chunk_size = 4096
        return [(kind, stamp, body) for kind, _, stamp, body in reader.feed(buffer)]


def test_it_starts_at_a_keyframe_with_timestamps_from_zero():
    world = World()
    world.push.start()
    world.publish()
    assert world.push.media.status == "PUBLISHING"
    world.push.deliver(video(9000, False))  # not a keyframe: skipped
    world.push.deliver(audio(4800))
    assert world.push.keyframe_wanted() and world.sent() == []
    world.push.deliver(video(90000, True))
    world.push.deliver(audio(48000))
    world.push.deliver(audio(48000, codec="opus"))  # FLV takes the AAC only
    world.push.deliver(video(93000, False))
    sent = world.sent()
    assert [(kind, stamp) for kind, stamp, _ in sent] == [
        (9, 0), (9, 0), (8, 0), (8, 0), (9, 33)]
    assert sent[0][2].startswith(b"\x17\x00")  # the sequence header first
    assert sent[1][2] == b"\x17\x01\x00\x00\x00" + len(b"\x65frame").to_bytes(4, "big") \
        + b"\x65frame"
    assert sent[2][2] == b"\xaf\x00\x11\x90" and sent[3][2] == b"\xaf\x01aac!"


def test_drops_are_tried_again_with_backoff_then_given_up():
    world = World(retries=3, refuse=10)
    world.push.start()
    waits = []
    for _ in range(3):
        assert world.push.media.status == "PENDING" and not world.ended
        call, = world.clock.getDelayedCalls()
        waits.append(call.getTime() - world.clock.seconds())
        world.clock.advance(waits[-1])
    assert waits == [1.0, 2.0, 4.0] and world.connects == 4
    assert world.ended == [world.push]
    assert world.push.media.status == "FAILED"
    assert world.push.media.info.startswith("Failed by RTMP writer error: cannot connect")


def test_a_connection_that_published_gets_every_retry_again():
    world = World(retries=1)
    world.push.start()
    world.publish()
    world.push.protocol.connectionLost()
    assert world.push.media.status == "PENDING"
    world.clock.advance(1.0)
    world.publish()  # back
    world.push.protocol.connectionLost()
    assert world.push.media.status == "PENDING" and not world.ended


def test_a_refusal_is_not_tried_again():
    world = World()
    world.push.start()
    protocol = world.push.protocol
    protocol._error = RtmpError("the RTMP server refused: BadName", final=True)
    protocol.connectionLost()
    assert world.ended and world.push.media.status == "FAILED"
    assert "BadName" in world.push.media.info and not world.clock.getDelayedCalls()


def test_a_server_that_stops_reading_ends_the_push():
    world = World()
    world.push.start()
    world.publish()
    world.push.deliver(video(0, True))
    world.push.pauseProducing()  # the socket's buffer is full
    world.push.deliver(video(3000, False))
    assert world.push.dropped == 1 and not world.ended
    world.push.resumeProducing()
    world.push.deliver(video(6000, False))  # after a gap: a keyframe is needed
    assert world.push.keyframe_wanted()
    world.push.pauseProducing()
    world.clock.advance(STALLED)
    world.push.deliver(video(9000, True))
    assert world.ended and "read nothing" in world.push.media.info
    assert world.transports[-1].disconnected  # dropped at once, not after its backlog


def test_a_server_that_never_lets_us_publish_is_left_and_tried_again():
    world = World(retries=1)
    world.push.start()  # connected; the server says nothing (a TLS or RTMP handshake)
    world.clock.advance(PUBLISH_WAIT - 0.1)
    assert world.push.media.status == "PENDING" and not world.transports[0].disconnected
    world.clock.advance(0.1)
    assert world.transports[0].disconnected
    world.push.protocol.connectionLost(Failure(ConnectionDone()))  # the abort's end
    assert "did not let us publish within 15 s" in world.push.media.info
    world.clock.advance(1.0)  # tried again
    assert world.connects == 2
    world.publish()
    world.clock.advance(PUBLISH_WAIT * 2)  # publishing: no deadline left behind
    assert world.push.media.status == "PUBLISHING" and not world.transports[1].disconnected


def test_the_stream_s_end_ends_the_push():
    world = World()
    world.push.start()
    world.publish()
    world.push.closed("Stopped by publisher stop", failed=False)
    assert world.push.media.status == "STOPPED"
    assert world.push.media.info == "Stopped by publisher stop"
    assert world.transports[-1].disconnecting
