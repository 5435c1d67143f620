"""RTP payloads of a sample, made once however many viewers send it.

H.264 is cut as aiortc cuts it (single NAL units, STAP-A aggregates, FU-A
fragments up to 1,300 bytes); Opus is one packet a frame. The payloads are
kept by the sample's data (the same bytes object reaches every viewer of a
stream, late joiners' cached GOP included), in a bounded cache; each viewer's
track keeps the payloads it sent lately, for NACKs, by itself.
"""

from __future__ import annotations

from wcs.media.sample import Sample
from wcs.webrtc.internals import h264_payloads

#: Samples whose payloads are kept (about ten seconds of one broadcast).
CACHE = 1024

_cache: dict[bytes, tuple[bytes, ...]] = {}


def payloads(sample: Sample) -> tuple[bytes, ...]:
    """The RTP payloads of ``sample``, in order; the last one carries the marker."""
    cut = _cache.get(sample.data)
    if cut is None:
        cut = h264_payloads(sample.data) if sample.codec == "h264" else (sample.data,)
        if len(_cache) >= CACHE:
            del _cache[next(iter(_cache))]
        _cache[sample.data] = cut
    return cut
