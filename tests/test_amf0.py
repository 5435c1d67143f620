"""AMF0: what RTMP commands carry, both ways, and what is refused."""

from __future__ import annotations

import pytest

from wcs.push import amf0


def test_values_go_both_ways():
    values = ["connect", 1.0, {"app": "live", "n": 2.5, "ok": True, "nothing": None},
              None, "x" * 70_000]
    assert amf0.decode(amf0.encode(*values)) == values


def test_an_ecma_array_reads_as_a_mapping():
    meta = {"width": 640.0, "height": 360.0, "stereo": True, "encoder": "wcsvod"}
    assert amf0.decode(amf0.ecma_array(meta)) == [meta]


@pytest.mark.parametrize("data", [
    b"\x00\x01",  # a number cut short
    b"\x02\x00\x10abc",  # a string longer than what follows
    b"\x03\x00\x01a",  # an object cut short
    b"\x11",  # AMF3 switch: not read here
    b"\x03" + b"\x00\x01a\x03" * 40,  # nested beyond reason
])
def test_bad_amf_is_an_error_not_a_crash(data):
    with pytest.raises(amf0.AmfError):
        amf0.decode(data)
