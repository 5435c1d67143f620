"""RTP payloads of a sample, made once however many viewers send it.

H.264 is cut as aiortc cuts it (single NAL units, STAP-A aggregates, FU-A
fragments up to 1,300 bytes); Opus is one packet a frame. The payloads are
kept by the sample's data (the same bytes object reaches every viewer of a
stream, late joiners' cached GOP included), in a bounded cache, and numbered,
so that a viewer's NACK finds them again (:func:`recent`).
"""

from __future__ import annotations

import itertools

from aiortc.codecs.h264 import H264Encoder

from wcs.media.sample import Sample

#: Samples whose payloads are kept (about ten seconds of one broadcast).
CACHE = 1024

_cache: dict[bytes, tuple[int, tuple[bytes, ...]]] = {}
_numbered: dict[int, tuple[bytes, ...]] = {}
_numbers = itertools.count(1)


def payloads(sample: Sample) -> tuple[int, tuple[bytes, ...]]:
    """The sample's number and its RTP payloads, in order (the last one carries
    the marker)."""
    cut = _cache.get(sample.data)
    if cut is None:
        if sample.codec == "h264":
            parts = tuple(H264Encoder._packetize(H264Encoder._split_bitstream(sample.data)))
        else:
            parts = (sample.data,)
        cut = (next(_numbers), parts)
        if len(_cache) >= CACHE:
            del _cache[next(iter(_cache))]
            del _numbered[next(iter(_numbered))]
        _cache[sample.data] = cut
        _numbered[cut[0]] = parts
    return cut


def recent(number: int) -> tuple[bytes, ...] | None:
    """The payloads of a sample cut lately, by its number (None once forgotten)."""
    return _numbered.get(number)
