"""Publishing with record: true, to an MP4 that plays back as vod://."""

from __future__ import annotations

import av

from tests.harness import run
from tests.rtc_client import play
from tests.rtc_publisher import publish
from wcs.media import boxes, h264


def test_recorded_video_is_byte_identical_and_audio_is_aac(start_server, media, tmp_path):
    folder = tmp_path / "records"
    folder.mkdir()
    server = start_server(media_dir=str(folder))
    sent = run(publish(server.ws_url, "cam 1", media / "baseline.mp4", seconds=4))
    assert sent.statuses == ["PUBLISHING", "UNPUBLISHED"], sent.events
    name = sent.events[-1]["recordName"]
    assert sent.events[0]["recordName"] == name and name.startswith("cam_1-")
    path = folder / name
    assert path.exists() and not list(folder.glob(".*.part"))
    with path.open("rb") as handle:
        kinds = [box.kind for box in boxes.top_level(handle, path.stat().st_size)]
    assert kinds.index("moov") < kinds.index("mdat"), kinds
    with av.open(str(path)) as container:
        video, audio = container.streams.video[0], container.streams.audio[0]
        assert (video.codec_context.name, audio.codec_context.name) == ("h264", "aac")
        config = h264.parse_avcc(video.codec_context.extradata)
        recorded = [h264.split_avcc(bytes(p), config.length_size)
                    for p in container.demux(video=0) if p.size]
        duration = container.duration / 1e6
    sent_units = [h264.split_annexb(data) for data in sent.sent_video]
    assert recorded == sent_units[: len(recorded)]
    assert len(recorded) >= len(sent_units) - 2, "all but the frames still in flight at stop"
    assert abs(duration - sent.seconds) < 0.5, (duration, sent.seconds)
    # and it plays back as personal VOD
    got = run(play(server.ws_url, f"vod://{name}"))
    assert got.statuses == ["PENDING", "PLAYING", "STOPPED"]
    assert len(got.video) >= len(recorded) - 2
