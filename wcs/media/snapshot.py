"""A stream's current picture as PNG: its H.264 from a keyframe on, decoded.

Decoding a GOP is tens of milliseconds of work, so it runs on a worker thread
(the caller's runner), never on the reactor.
"""

from __future__ import annotations

from collections.abc import Sequence

import av

from wcs.errors import WrongFormat
from wcs.media.sample import Sample


def png(samples: Sequence[Sample]) -> bytes:
    """The last picture of ``samples`` (video from a keyframe on), as PNG bytes."""
    decoder = av.CodecContext.create("h264", "r")
    last = None
    try:
        for sample in samples:
            if sample.kind == "video":
                for frame in decoder.decode(av.Packet(sample.data)):
                    last = frame
        for frame in decoder.decode(None):
            last = frame
    except av.FFmpegError as error:
        raise WrongFormat(f"the picture could not be decoded ({error})") from None
    if last is None:
        raise WrongFormat("no picture could be decoded")
    rgb = last.reformat(format="rgb24")
    encoder = av.CodecContext.create("png", "w")
    encoder.width, encoder.height, encoder.pix_fmt = rgb.width, rgb.height, "rgb24"
    return b"".join(bytes(packet) for packet in [*encoder.encode(rgb), *encoder.encode(None)])
