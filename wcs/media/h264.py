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
        size = int.from_bytes(record[position : position + 2], "big")
        position += 2
        nal = record[position : position + size]
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
        size = int.from_bytes(data[position : position + length_size], "big")
        position += length_size
        if size == 0 or position + size > len(data):
            break
        units.append(data[position : position + size])
        position += size
    return units


def to_annexb(data: bytes, config: AvcConfig) -> tuple[bytes, bool]:
    """Convert one sample; returns ``(annex_b, is_idr)``.

    Access unit delimiters are dropped (RTP does not carry them); SPS/PPS
    go in front of an IDR that does not already carry them.
    """
    units = [
        nal for nal in split_avcc(data, config.length_size) if nal and nal[0] & 0x1F != NAL_AUD
    ]
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


class _Bits:
    """An RBSP read bit by bit, with the Exp-Golomb codes SPS fields use."""

    def __init__(self, nal: bytes) -> None:
        self.data = nal.replace(b"\x00\x00\x03", b"\x00\x00")  # emulation prevention
        self.position = 0

    def bit(self) -> int:
        byte = self.data[self.position >> 3]  # IndexError past the end: a bad SPS
        value = (byte >> (7 - (self.position & 7))) & 1
        self.position += 1
        return value

    def bits(self, count: int) -> int:
        value = 0
        for _ in range(count):
            value = value << 1 | self.bit()
        return value

    def ue(self) -> int:
        zeros = 0
        while self.bit() == 0:
            zeros += 1
            if zeros > 31:
                raise ValueError("Exp-Golomb code too long")
        return (1 << zeros) - 1 + self.bits(zeros)

    def se(self) -> int:
        value = self.ue()
        return (value + 1) // 2 if value & 1 else -(value // 2)


#: Profiles whose SPS carries chroma format and bit depths (H.264 7.3.2.1.1).
_HIGH_PROFILES = {100, 110, 122, 244, 44, 83, 86, 118, 128, 138, 139, 134, 135}


def picture_size(sps: bytes) -> tuple[int, int]:
    """Width and height of the pictures an SPS (NAL header included) describes,
    cropping applied: what a viewer sees, without decoding anything."""
    try:
        bits = _Bits(sps[1:])
        profile = bits.bits(8)
        bits.bits(16)  # constraint flags, level
        bits.ue()  # seq_parameter_set_id
        chroma = 1
        if profile in _HIGH_PROFILES:
            chroma = bits.ue()
            if chroma == 3:
                bits.bit()  # separate_colour_plane_flag
            bits.ue(), bits.ue()  # bit depths
            bits.bit()  # qpprime_y_zero_transform_bypass_flag
            if bits.bit():  # scaling matrices present
                for index in range(8 if chroma != 3 else 12):
                    if bits.bit():
                        _skip_scaling_list(bits, 16 if index < 6 else 64)
        bits.ue()  # log2_max_frame_num_minus4
        order = bits.ue()
        if order == 0:
            bits.ue()
        elif order == 1:
            bits.bit()
            bits.se(), bits.se()
            for _ in range(bits.ue()):
                bits.se()
        bits.ue()  # max_num_ref_frames
        bits.bit()  # gaps_in_frame_num_value_allowed_flag
        width_mbs, height_units = bits.ue() + 1, bits.ue() + 1
        frame_mbs_only = bits.bit()
        if not frame_mbs_only:
            bits.bit()  # mb_adaptive_frame_field_flag
        bits.bit()  # direct_8x8_inference_flag
        width, height = width_mbs * 16, height_units * 16 * (2 - frame_mbs_only)
        if bits.bit():  # frame cropping
            left, right, top, bottom = bits.ue(), bits.ue(), bits.ue(), bits.ue()
            crop_x = 1 if chroma in (0, 3) else 2
            crop_y = (1 if chroma in (0, 2, 3) else 2) * (2 - frame_mbs_only)
            width -= (left + right) * crop_x
            height -= (top + bottom) * crop_y
    except (IndexError, ValueError):
        raise WrongFormat("H.264 SPS is malformed") from None
    if width <= 0 or height <= 0:
        raise WrongFormat("H.264 SPS is malformed")
    return width, height


def _skip_scaling_list(bits: _Bits, size: int) -> None:
    last = following = 8
    for _ in range(size):
        if following:
            following = (last + bits.se() + 256) % 256
        last = following or last


def annexb_picture_size(data: bytes) -> tuple[int, int] | None:
    """The picture size an access unit's SPS says, if it carries one."""
    for nal in split_annexb(data):
        if nal[0] & 0x1F == NAL_SPS:
            return picture_size(nal)
    return None
