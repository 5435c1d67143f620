"""H.264 as MP4 stores it (AVCC) turned into what RTP packetisers want (Annex B).

MP4 keeps SPS/PPS only in the ``avcC`` box; a viewer that joins at any IDR
needs them in band, so they are put before every IDR that lacks them.
"""

from __future__ import annotations

from dataclasses import dataclass

from wcs.errors import WrongFormat

START_CODE = b"\x00\x00\x00\x01"
NAL_IDR, NAL_SPS, NAL_PPS, NAL_AUD = 5, 7, 8, 9


@dataclass(frozen=True)
class AvcConfig:
    """The parts of an ``AVCDecoderConfigurationRecord`` that streaming needs."""

    profile_idc: int
    constraints: int
    level_idc: int
    length_size: int
    sps: tuple[bytes, ...]
    pps: tuple[bytes, ...]
    record: bytes

    @property
    def profile_level_id(self) -> str:
        """As in SDP ``fmtp``: six hex digits, e.g. ``4d401e``."""
        return f"{self.profile_idc:02x}{self.constraints:02x}{self.level_idc:02x}"

    @property
    def parameter_sets(self) -> bytes:
        """SPS and PPS in Annex B form."""
        return b"".join(START_CODE + nal for nal in self.sps + self.pps)


def parse_avcc(record: bytes | None) -> AvcConfig:
    """Read an ``avcC`` record; refuses Annex B extradata or a broken record."""
    if not record or len(record) < 7 or record[0] != 1:
        raise WrongFormat("H.264 track has no avcC configuration")
    try:
        length_size = (record[4] & 0x03) + 1
        position = 5
        sps, position = _parameter_sets(record, position, record[5] & 0x1F)
        pps, position = _parameter_sets(record, position, record[position])
    except IndexError:
        raise WrongFormat("H.264 avcC configuration is truncated") from None
    if not sps or not pps:
        raise WrongFormat("H.264 avcC configuration has no SPS or PPS")
    return AvcConfig(record[1], record[2], record[3], length_size, sps, pps, bytes(record))


def _parameter_sets(record: bytes, position: int, count: int) -> tuple[tuple[bytes, ...], int]:
    position += 1
    found = []
    for _ in range(count):
        size = int.from_bytes(record[position:position + 2], "big")
        position += 2
        nal = record[position:position + size]
        if len(nal) != size:
            raise IndexError
        found.append(bytes(nal))
        position += size
    return tuple(found), position


def split_avcc(data: bytes, length_size: int) -> list[bytes]:
    """The NAL units of one length-prefixed sample; stops at a bad length."""
    units = []
    position = 0
    while position + length_size <= len(data):
        size = int.from_bytes(data[position:position + length_size], "big")
        position += length_size
        if size == 0 or position + size > len(data):
            break
        units.append(data[position:position + size])
        position += size
    return units


def to_annexb(data: bytes, config: AvcConfig) -> tuple[bytes, bool]:
    """Convert one sample; returns ``(annex_b, is_idr)``.

    Access unit delimiters are dropped (RTP does not carry them); SPS/PPS
    go in front of an IDR that does not already carry them.
    """
    units = [nal for nal in split_avcc(data, config.length_size)
             if nal and nal[0] & 0x1F != NAL_AUD]
    types = {nal[0] & 0x1F for nal in units}
    is_idr = NAL_IDR in types
    prefix = config.parameter_sets if is_idr and NAL_SPS not in types else b""
    return prefix + b"".join(START_CODE + nal for nal in units), is_idr


def split_annexb(data: bytes) -> list[bytes]:
    """The NAL units of an Annex B access unit (3- or 4-byte start codes)."""
    units = []
    for part in data.split(b"\x00\x00\x01"):
        part = part.rstrip(b"\x00") if part else part
        if part:
            units.append(part)
    return units
