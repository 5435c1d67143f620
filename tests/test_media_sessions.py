"""A worker's plays and publications as REST ``/stream/*`` sees them."""

from __future__ import annotations

import pytest

from wcs.media.sample import AudioInfo, MediaInfo, VideoInfo
from wcs.streams.media_sessions import MediaSession, MediaSessions

pytestmark = pytest.mark.unit


def test_a_media_session_is_listed_as_wcs_lists_a_stream():
    media = MediaSession("m1", "cam", False, "MSE", "s1", width=320)
    media.described(MediaInfo(10.0, VideoInfo(640, 360, 30.0, "42e01f"), AudioInfo(44100, 2)))
    listed = media.listed()
    assert {key: listed[key] for key in ("mediaSessionId", "name", "published",
                                         "mediaProvider", "sessionId", "status")} == {
        "mediaSessionId": "m1", "name": "cam", "published": False, "mediaProvider": "MSE",
        "sessionId": "s1", "status": "NEW"}
    assert (listed["width"], listed["height"]) == (640, 360)
    assert (listed["audioCodec"], listed["videoCodec"]) == ("mpeg4-generic", "H264")
    audio_only = MediaSession("m2", "radio", False, "WebRTC", "s1")
    audio_only.described(MediaInfo(1.0, None, AudioInfo(48000, 2)))
    assert (audio_only.listed()["audioCodec"], audio_only.listed()["videoCodec"]) == \
        ("opus", "")
    assert MediaSession(**media.as_dict()) == media  # as it travels in a load


def test_pages_may_choose_the_same_id_and_each_is_kept_and_stopped():
    table = MediaSessions("1.1")
    stopped: list[tuple[str, str]] = []
    first = MediaSession("same", "a", False, "WebRTC", "s1")
    second = MediaSession("same", "b", True, "WebRTC", "s2")
    table.add(first, lambda info: stopped.append(("first", info)), lambda: "stream-a")
    table.add(second, lambda info: stopped.append(("second", info)), lambda: None)
    assert first.worker == "1.1" and len(table) == 2
    assert table.stream("same") == "stream-a" and table.stream("other") is None
    assert table.stop("same", "Stopped by server") == 2
    assert sorted(stopped) == [("first", "Stopped by server"), ("second", "Stopped by server")]
    table.remove(first)
    assert table.all() == [second]
    assert table.stop("nothing", "x") == 0
