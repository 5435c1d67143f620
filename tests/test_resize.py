"""Playing at a requested size: the size chosen, the pictures scaled and encoded
once per (stream, size) off the reactor, and the rendition's life."""

from __future__ import annotations

import time
from pathlib import Path

import av
import pytest
from twisted.internet.task import Clock

from tools.makemedia import make_mp4
from wcs.errors import Unsupported
from wcs.media.mp4 import Mp4File
from wcs.media.resize import Resizer
from wcs.media.sizing import PROFILE_LEVEL_ID, fitted
from wcs.sources import OpenedMedia
from wcs.streams import uri
from wcs.streams.rendition import Rendition
from wcs.streams.stream import VodStream


@pytest.mark.parametrize("box,size", [
    ((320, 240), (320, 180)),  # inside the box, aspect kept
    ((320, 0), (320, 180)), ((0, 180), (320, 180)),
    ((321, 181), (320, 180)),  # even dimensions, inside the box
    ((0, 0), None), ((640, 360), None), ((1920, 1080), None),  # never larger
    ((2, 2), None), ((28, 16), None), ((30, 30), (30, 16)),  # 16 pixels a side at least
])
def test_the_size_a_play_gets(box, size):
    assert fitted((640, 360), box) == size


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    return make_mp4(tmp_path_factory.mktemp("resize") / "clip.mp4", seconds=3, gop=30)


def test_the_pictures_are_scaled_and_encoded_as_baseline(clip):
    resizer = Resizer((320, 180), 30.0)
    media = Mp4File(clip, "clip")
    out = []
    for sample in media.samples():
        if sample.kind == "video":
            out.extend((sample, encoded) for encoded in resizer.feed(sample))
    assert len(out) == 90 and resizer.frames == 90
    assert all(source.pts == encoded.pts for source, encoded in out)  # the source's timeline
    assert [source.keyframe for source, _ in out] == [encoded.keyframe for _, encoded in out]
    decoder = av.CodecContext.create("h264", "r")
    pictures = []
    for _, encoded in out:
        packet = av.Packet(encoded.data)
        pictures.extend(decoder.decode(packet))
    assert len(pictures) >= 89 and (pictures[0].width, pictures[0].height) == (320, 180)
    assert decoder.profile in ("Constrained Baseline", "Baseline")


class Sink:
    pressed_join = True
    lead = 0.0

    def __init__(self) -> None:
        self.got: list = []
        self.ended = None

    def deliver(self, sample) -> None:
        self.got.append(sample)

    def keyframe_wanted(self) -> bool:
        return not self.got

    def closed(self, info, failed) -> None:
        self.ended = (info, failed)


def test_a_rendition_is_shared_and_goes_with_its_last_viewer(clip):
    from wcs.streams.registry import StreamRegistry

    clock = Clock()
    posted: list = []
    clock.callFromThread = lambda f, *args: posted.append((f, args))  # the reactor's
    registry = StreamRegistry(None, clock)  # type: ignore[arg-type]
    gone: list = []
    source = VodStream(uri.parse("vod-live://clip.mp4"), "vod-live://clip.mp4",
                       OpenedMedia(Mp4File(clip, "clip")), clock, gone.append, live=True)
    first = registry.renditions.sized(source, 320, 240)
    assert isinstance(first, Rendition) and first.info.video.width == 320
    assert first.info.video.profile_level_id == PROFILE_LEVEL_ID
    assert registry.renditions.sized(source, 320, 240) is first  # one encode per (stream, size)
    assert registry.renditions.sized(source, 0, 0) is source and registry.renditions.sized(source, 999, 999) is source
    viewers = [Sink(), Sink()]
    for viewer in viewers:
        first.subscribe(viewer)
    deadline = time.monotonic() + 10
    while sum(1 for s in viewers[1].got if s.kind == "video") < 30 \
            and time.monotonic() < deadline:
        clock.advance(1 / 30)
        time.sleep(0.005)
        while posted:
            function, args = posted.pop(0)
            function(*args)
    video = [s for s in viewers[1].got if s.kind == "video"]
    assert len(video) >= 30 and video[0].keyframe
    assert any(s.kind == "audio" for s in viewers[1].got)
    for viewer in viewers:
        first.unsubscribe(viewer)
    assert first.closed and len(registry.renditions) == 0
    assert source.broadcast.subscribers == []  # it left its source


def test_transcoding_disabled_refuses_such_plays(clip):
    from wcs.streams.registry import StreamRegistry

    clock = Clock()
    registry = StreamRegistry(None, clock, transcoding=False)  # type: ignore[arg-type]
    gone: list = []
    source = VodStream(uri.parse("vod://clip.mp4"), "vod://clip.mp4",
                       OpenedMedia(Mp4File(clip, "clip")), clock, gone.append)
    with pytest.raises(Unsupported, match="Transcoding required, but disabled"):
        registry.renditions.sized(source, 320, 240)
    assert gone == [source]  # the personal play it was opened for is let go
    assert registry.renditions.sized(source, 640, 360) is source  # its own size needs nothing


def test_a_rendition_ends_with_its_source(clip):
    clock = Clock()
    source = VodStream(uri.parse("vod-live://clip.mp4"), "vod-live://clip.mp4",
                       OpenedMedia(Mp4File(clip, "clip")), clock, lambda _: None, live=True)
    gone: list = []
    rendition = Rendition(source, (320, 180), lambda f, *a: None, gone.append)
    viewer = Sink()
    rendition.subscribe(viewer)
    source.terminate("Stopped by server")
    assert viewer.ended == ("Stopped by server", False) and gone == [rendition]
    late = Sink()
    rendition.subscribe(late)
    assert late.ended == ("Stopped by server", False)


def test_webrtc_viewers_are_offered_the_rungs_worth_an_encoder():
    """Renditions.offers: the source, then each rung that needs at most 0.7 of the
    source's bitrate (a 280 kb/s file's 180p would save too little); all of them
    when the source's rate is not known (a publication); none with webrtc_abr off."""
    from wcs.media.sample import MediaInfo, VideoInfo
    from wcs.streams.ladder import Ladder
    from wcs.streams.renditions import Renditions

    class Source:
        def __init__(self, bitrate):
            self.info = MediaInfo(0.0, VideoInfo(1280, 720, 30.0, "4d401f"), None, bitrate)

    renditions = Renditions(Clock(), True, Ladder.parse("360p,180p"))
    names = lambda bitrate: [o.name for o in renditions.offers(Source(bitrate))]  # noqa: E731
    assert names(3_000_000) == ["source", "360p", "180p"]
    assert names(900_000) == ["source", "180p"]  # 360p needs 755 kb/s: not worth it
    assert names(300_000) == []  # nothing worth it: no view at all
    assert names(0) == ["source", "360p", "180p"]
    offers = renditions.offers(Source(3_000_000))
    assert offers[0].need == 3_000_000 and offers[2].size == (320, 180)
    assert Renditions(Clock(), True, Ladder.parse("360p"), adaptive=False).offers(
        Source(3_000_000)) == []
    assert Renditions(Clock(), False, Ladder.parse("360p")).offers(Source(3_000_000)) == []
