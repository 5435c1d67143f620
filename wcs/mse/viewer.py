"""One MSE viewer: a player whose media goes over the SDK's second WebSocket.

The answer only says which kinds flow (wcs-protocol.md §4); playing starts
when the SDK's media socket arrives. The socket is a push-producer consumer:
while Twisted says its buffer is full, samples are dropped and the viewer
restarts at the next keyframe; a viewer still stuck after ``STUCK_LIMIT``
seconds is ended. Server memory never grows with a slow viewer.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, Protocol

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from wcs.errors import Unprocessable
from wcs.media.sample import MediaInfo, Sample
from wcs.metrics import METERS
from wcs.mse.channels import MediaChannels
from wcs.mse.packetizer import MseFramer, MsePacketizer, Records

log = Logger()

STUCK_LIMIT = 5.0
#: Bytes still sent once the socket's buffer is full (Twisted's 64 KiB): a
#: joiner's lead (2.5 s or more at once) goes out whole instead of being cut
#: back to the next keyframe; within the session's ``ws_send_buffer`` bound.
PAUSED_ALLOWANCE = 512 * 1024
#: Media the SDK's MSE player holds before it appends anything: it waits until
#: each track spans over 2 s (its buffer controller's ``buffered() > 2``).
MSE_LEAD = 2.5
#: How long after the answer the page's media socket may take to come, and
#: what the play ends with when it does not.
MEDIA_TRANSPORT_WAIT = 10.0
NO_MEDIA_TRANSPORT = (
    f"No media transport: the page's media WebSocket (connectMediaTransport) "
    f"did not come within {MEDIA_TRANSPORT_WAIT:g} s"
)


class MediaChannel(Protocol):
    """The media-transport WebSocket, as the viewer needs it."""

    def send(self, data: bytes) -> None: ...

    def prepare(self, payload: bytes) -> Any: ...

    def send_prepared(self, message: Any) -> None: ...

    def register_producer(self, producer: object) -> None: ...

    def unregister_producer(self) -> None: ...


def answer_sdp(info: MediaInfo) -> str:
    """The SDK reads only whether each m-line's port is non-zero (§4)."""
    profile = info.video.profile_level_id if info.video else "42e01f"
    return "\r\n".join(
        [
            "v=0",
            "o=- 0 0 IN IP4 0.0.0.0",
            "s=wcsvod",
            "t=0 0",
            f"m=video {1 if info.video else 0} RTP/AVP 112",
            "a=rtpmap:112 H264/90000",
            f"a=fmtp:112 packetization-mode=1;profile-level-id={profile}",
            "a=sendonly",
            f"m=audio {1 if info.audio else 0} RTP/AVP 108",
            "a=rtpmap:108 mpeg4-generic/48000/2",
            "a=sendonly",
            "",
        ]
    )


class MseViewer:
    """Player; ``on_state`` gets "connected" when the media socket arrives, then
    "stopped"/"failed" with an info, once."""

    pressed_join = False  # MSE plays the cached GOP at its own pace from its keyframe
    lead = MSE_LEAD  # sent at once: the first picture does not wait for 2 s of media
    audio_codecs = frozenset({"aac"})  # as the file stores it: no transcoding
    connect_deadline = (MEDIA_TRANSPORT_WAIT, NO_MEDIA_TRANSPORT)

    def __init__(
        self,
        channels: MediaChannels,
        session_id: str,
        info: MediaInfo,
        label: str,
        clock: IReactorTime,
        on_state: Callable[[str, str | None], None],
    ) -> None:
        self.channels = channels
        self.session_id = session_id
        self.info = info
        self.label = label
        self.clock = clock
        self._on_state = on_state
        self.channel: MediaChannel | None = None
        self.on_keyframe_request: Callable[[], None] = lambda: None  # MSE never asks
        self.packetizer = MsePacketizer(info.audio.aac_config if info.audio else b"")
        self.paused_since: float | None = None
        self.held = 0  # bytes sent on since the socket's buffer filled
        self.need_key = info.video is not None
        self.dropped = 0
        self.packets = self.octets = 0  # messages and bytes sent
        METERS.traffic("MSE").opened(self)
        self._done = False

    def answer(self, offer_sdp: str) -> Deferred[str]:
        return succeed(answer_sdp(self.info))

    def trickle(self, fragment: object) -> Deferred[None]:
        """MSE has no ICE."""
        return fail(Unprocessable("an MSE play takes no ICE candidates"))

    def answered(self) -> None:
        """The SDK opens its media socket now (or already has)."""
        if not self._done:
            self.channels.wait(self.session_id, self._attach)

    def _attach(self, channel: MediaChannel) -> None:
        if self._done:
            return
        self.channel = channel
        channel.register_producer(self)
        self._on_state("connected", None)

    # IPushProducer, driven by the socket's buffer

    def pauseProducing(self) -> None:
        if self.paused_since is None:
            self.paused_since, self.held = self.clock.seconds(), 0

    def resumeProducing(self) -> None:
        self.paused_since = None

    def stopProducing(self) -> None:
        self._end("stopped", "Media connection closed")

    # Subscriber

    def keyframe_wanted(self) -> bool:
        return self.need_key

    def deliver(self, sample: Sample) -> None:
        """A sample of its own (the join burst): framed for this viewer alone."""
        if self._admits(sample):
            data = self.packetizer.pack(sample)
            if data:
                self._sent(len(data))
                assert self.channel is not None
                self.channel.send(data)

    def deliver_records(self, sample: Sample, records: Records) -> None:
        """A live sample as its broadcast framed it (:class:`Batch`)."""
        if not self._admits(sample):
            return
        assert self.channel is not None
        if records.first is not None and self.packetizer.take_audio_config():
            if records.first_message is None:
                records.first_message = self.channel.prepare(records.first)
            self._sent(len(records.first))
            self.channel.send_prepared(records.first_message)
            return
        if records.message is None:
            records.message = self.channel.prepare(records.data)
        self._sent(len(records.data))
        self.channel.send_prepared(records.message)

    def _admits(self, sample: Sample) -> bool:
        """Whether ``sample`` goes out: not while the socket has been full past
        the allowance (then from the next keyframe), nor before a keyframe."""
        if self._done or self.channel is None:
            return False
        if self.paused_since is not None and (
            self.held >= PAUSED_ALLOWANCE or self.clock.seconds() - self.paused_since > STUCK_LIMIT
        ):
            self.dropped += 1
            self.need_key = self.info.video is not None
            if self.clock.seconds() - self.paused_since > STUCK_LIMIT:
                log.warn(
                    "{label}: media socket stuck; {n} samples dropped",
                    label=self.label,
                    n=self.dropped,
                )
                self._end("failed", "Viewer too slow: the media connection could not keep up")
            return False
        if self.need_key:
            if not (sample.kind == "video" and sample.keyframe):
                return False
            self.need_key = False
        return True

    def _sent(self, size: int) -> None:
        if self.paused_since is not None:
            self.held += size
        self.packets += 1
        self.octets += size

    class Batch:
        """A broadcast's MSE viewers: each live sample framed once (records and
        WebSocket frame) and written to every viewer's socket as it is."""

        def __init__(self) -> None:
            self.viewers: dict[MseViewer, MseFramer] = {}
            self._framers: dict[bytes, MseFramer] = {}

        def __iter__(self) -> Iterator[MseViewer]:
            return iter(list(self.viewers))

        def add(self, viewer: MseViewer) -> None:
            config = viewer.info.audio.aac_config if viewer.info.audio else b""
            framer = self._framers.get(config)
            if framer is None:
                framer = self._framers[config] = MseFramer(config)
            framer.assume(viewer.packetizer.parameters)  # its burst's, if it had one
            self.viewers[viewer] = framer

        def remove(self, viewer: MseViewer) -> None:
            framer = self.viewers.pop(viewer, None)
            if framer is not None and framer not in self.viewers.values():
                del self._framers[framer.audio_config]

        def deliver(self, sample: Sample) -> None:
            # every framer sees every sample (its SPS/PPS), whoever takes it
            made = {id(framer): framer.records(sample) for framer in self._framers.values()}
            for viewer, framer in list(self.viewers.items()):
                records = made[id(framer)]
                if records is not None:
                    viewer.deliver_records(sample, records)

    def closed(self, info: str | None, failed: bool) -> None:
        self._end("failed" if failed else "stopped", info)

    def _end(self, state: str, info: str | None) -> None:
        if not self._done:
            self._done = True
            self._on_state(state, info)

    def close(self) -> None:
        """Let go of the socket (it stops driving us) and of the owner's callbacks,
        so nothing here waits for the garbage collector."""
        self._done = True
        METERS.traffic("MSE").closed(self)
        self.channels.cancel(self.session_id, self._attach)
        channel, self.channel = self.channel, None
        if channel is not None:
            channel.unregister_producer()
        self._on_state = _ignore
        self.on_keyframe_request = _nothing


def _ignore(_state: str, _info: str | None) -> None:
    """What a closed viewer reports to: nobody."""


def _nothing() -> None:
    """What a closed viewer asks for: nothing."""
