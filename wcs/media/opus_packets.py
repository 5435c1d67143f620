"""Consecutive 20 ms Opus frames joined into one longer Opus packet.

Over WebRTC each Opus packet is its own UDP datagram, and a datagram's way
through the kernel costs the server far more than its bytes: audio is 61 % of a
broadcast's datagrams to a viewer. One packet may carry up to 120 ms of Opus
(RFC 6716 §3.2.5, "code 3": a frame count, then each frame's length), which
every decoder takes; a browser's receiver reads the duration from the packet.
Joining two frames halves the audio datagrams for 20 ms more delay, which a
video-on-demand viewer does not notice (the configuration's
``webrtc_audio_packet_ms``).
"""

from __future__ import annotations

from collections.abc import Sequence

from wcs.media.sample import OPUS_FRAME, Sample

#: Frames one code 3 packet may carry (RFC 6716: at most 120 ms of audio; 20 ms frames).
MOST_FRAMES = 6
#: The most bytes a joined packet may take: an RTP payload must fit one datagram
#: (as the video's are cut to), so a loud or high-rate stream joins fewer frames.
MOST_BYTES = 1200
#: The most bytes one Opus frame may take (RFC 6716 §3.4, R2).
MOST_FRAME_BYTES = 1275


def join(frames: Sequence[bytes]) -> bytes | None:
    """One Opus packet carrying ``frames`` (each a one-frame "code 0" packet,
    all of one configuration: mode, bandwidth, frame size and channels), or
    None when they cannot be joined so."""
    if not 1 < len(frames) <= MOST_FRAMES or not all(frames):
        return None
    toc = frames[0][0]
    if toc & 0x03 or any(frame[0] != toc for frame in frames):
        return None  # not single frames, or not one configuration
    if _duration(toc) * len(frames) > 120:
        return None  # (SILK's 40 and 60 ms frames)
    bodies = [frame[1:] for frame in frames]
    if any(len(body) > MOST_FRAME_BYTES for body in bodies):
        return None
    lengths = b"".join(_length(len(body)) for body in bodies[:-1])
    # code 3, VBR (each length but the last given), no padding
    return bytes((toc | 0x03, 0x80 | len(frames))) + lengths + b"".join(bodies)


def _duration(toc: int) -> float:
    """The milliseconds of one frame of the TOC byte's configuration (RFC 6716 table 2)."""
    config = toc >> 3
    if config < 12:  # SILK: 10, 20, 40, 60 ms
        return (10, 20, 40, 60)[config & 3]
    if config < 16:  # hybrid: 10, 20 ms
        return (10, 20)[config & 1]
    return (2.5, 5, 10, 20)[config & 3]  # CELT


def _length(size: int) -> bytes:
    """A frame's length as code 3 gives it: one byte below 252, else two."""
    if size < 252:
        return bytes((size,))
    first = 252 + (size & 0x03)
    return bytes((first, (size - first) >> 2))


class Joiner:
    """Gathers a stream's Opus frames ``count`` at a time into one packet.

    :meth:`take` answers what is to be sent now, each with how long it was
    held (its first frame's due time lies that far back: the sender's clock
    mapping must say so, or the sound drifts that far from the picture). A
    frame that does not follow the held ones (a gap, another configuration)
    sends them as they are and starts anew."""

    def __init__(self, count: int) -> None:
        if not 1 < count <= MOST_FRAMES:
            raise ValueError(f"frames in a packet must be 2 to {MOST_FRAMES}, not {count}")
        self.count = count
        self._held: list[Sample] = []

    def take(self, sample: Sample) -> list[tuple[Sample, float]]:
        """What goes out as ``sample`` is due: nothing while frames are gathered."""
        out: list[tuple[Sample, float]] = []
        if self._held and not self._follows(sample):
            out.extend(self._send(sample.time))
        if not sample.data or sample.data[0] & 0x03:  # not one frame: as it is
            out.append((sample, 0.0))
            return out
        self._held.append(sample)
        if len(self._held) == self.count:
            out.extend(self._send(sample.time))
        return out

    def flush(self) -> list[tuple[Sample, float]]:
        """The held frames now (the packet cut short, between two frames: held
        since the first, as at the last one's moment), and none held after."""
        return self._send(self._held[-1].time) if self._held else []

    def pending(self) -> list[tuple[Sample, float]]:
        """What :meth:`flush` would send, still held (for a viewer that leaves
        the others, who get them with the next frames)."""
        held = list(self._held)
        out = self.flush()
        self._held = held
        return out

    def _follows(self, sample: Sample) -> bool:
        """Whether ``sample`` can join the held frames: the next 20 ms, one
        frame, the same configuration (libopus moves between bandwidths now
        and then: a change starts the next packet), the packet within
        :data:`MOST_BYTES`."""
        last = self._held[-1]
        return (
            sample.pts == last.pts + OPUS_FRAME
            and bool(sample.data)
            and sample.data[0] == last.data[0]
            and sum(len(frame.data) + 1 for frame in self._held) + len(sample.data) <= MOST_BYTES
        )

    def _send(self, now: float) -> list[tuple[Sample, float]]:
        """The held frames, joined if they can be, else one by one."""
        held, self._held = self._held, []
        data = join([frame.data for frame in held]) if len(held) > 1 else None
        if data is None:
            return [(frame, now - frame.time) for frame in held]
        first = held[0]
        joined = Sample(first.kind, data, first.pts, first.clock, first.time, True, first.codec)
        return [(joined, now - first.time)]
