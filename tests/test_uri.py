"""Stream names: schemes, locations and limits."""

from __future__ import annotations

import pytest

from wcs.errors import InvalidName, Unsupported
from wcs.streams import uri as uris


def test_schemes_and_plain_names():
    assert uris.parse("vod://a/b.mp4") == uris.StreamUri("vod", "a/b.mp4")
    assert uris.parse("vod-live://s3/bucket/key.mp4") == uris.StreamUri("vod-live",
                                                                        "s3/bucket/key.mp4")
    assert uris.parse("cam1") == uris.StreamUri("", "cam1")
    assert str(uris.parse("vod-live://x.mp4")) == "vod-live://x.mp4"
    assert str(uris.parse("cam1")) == "cam1"


def test_unknown_schemes_are_named():
    with pytest.raises(Unsupported) as refused:
        uris.parse("rtsp://camera/stream")
    assert refused.value.info == "Unsupported stream scheme 'rtsp'"


def test_length_limit():
    uris.parse("vod://" + "a" * (uris.MAX_URI - 6))
    with pytest.raises(InvalidName, match=f"longer than {uris.MAX_URI} characters"):
        uris.parse("vod://" + "a" * uris.MAX_URI)


@pytest.mark.parametrize("name, good", [
    ("cam1", True), ("my stream", True), ("x" * uris.MAX_STREAM_NAME, True),
    ("", False), ("x" * (uris.MAX_STREAM_NAME + 1), False), ("a://b", False),
    (" cam", False), ("cam ", False), ("cam\n", False), ("cam\x00", False),
])
def test_stream_names(name, good):
    assert (uris.stream_name_problem(name) is None) is good
