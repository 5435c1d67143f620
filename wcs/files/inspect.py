"""What the server would do with a file, and why: the checks it runs when a
play opens one (``boxes.check_layout``, ``Mp4File``), plus what they imply.

A verdict is one of three: it plays as it is; it plays, re-encoded by the
server (B-frames: the video is re-encoded for every play); or it will not
play, with the reason a viewer's FAILED status would give. The rest says
what a person wants to know of a file: size, duration, picture, codecs and
profile, audio format, whether ``moov`` comes first (faststart, what S3
playback and the first picture's speed want), and undecodable AAC frames
(dropped, counted and logged by the server; ``prepare`` repairs them).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import av

from wcs.errors import WcsError
from wcs.media import boxes
from wcs.media.mp4 import Mp4File

PLAYS = "plays as is"
REENCODED = "plays with re-encode"
WILL_NOT_PLAY = "will not play"

#: H.264 profile_idc → name, as tools print it.
PROFILES = {
    66: "Baseline",
    77: "Main",
    88: "Extended",
    100: "High",
    110: "High 10",
    122: "High 4:2:2",
    244: "High 4:4:4",
}


@dataclass
class Report:
    """One file, as ``inspect`` prints it and the console lists it."""

    path: str
    verdict: str = WILL_NOT_PLAY
    reason: str = ""
    size: int = 0
    duration: float = 0.0
    width: int = 0
    height: int = 0
    fps: float = 0.0
    video: str = ""  # "H.264 High 4.0", or "" for none
    audio: str = ""  # "AAC 44100 Hz stereo", or ""
    faststart: bool = False
    b_frames: bool = False
    bad_audio_frames: int = 0
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def lines(self) -> list[str]:
        """How ``inspect`` shows it."""
        out = [f"{self.path}: {self.verdict}" + (f" ({self.reason})" if self.reason else "")]
        if self.verdict != WILL_NOT_PLAY:
            picture = f"{self.width}x{self.height} {self.fps:g} fps" if self.video else "no video"
            out.append(f"  {self.size} bytes, {self.duration:.2f} s, {picture}")
            out.append(f"  video: {self.video or 'none'}; audio: {self.audio or 'none'}")
            out.append(
                f"  faststart: {'yes' if self.faststart else 'no'}; "
                f"B-frames: {'yes' if self.b_frames else 'no'}"
            )
        out.extend(f"  note: {note}" for note in self.notes)
        return out


def inspect(path: Path, audio_check: bool = True) -> Report:
    """The report of one file; never raises for what is in the file."""
    report = Report(str(path))
    try:
        report.size = path.stat().st_size
        with path.open("rb") as handle:
            kinds = [box.kind for box in boxes.check_layout(handle, report.size)]
    except OSError as error:
        report.reason = f"cannot read the file ({error.strerror})"
        return report
    except WcsError as error:
        report.reason = error.info
        return report
    report.faststart = "mdat" not in kinds or kinds.index("moov") < kinds.index("mdat")
    try:
        media = Mp4File(path, str(path), announce=False)
    except WcsError as error:
        report.reason = error.info
        return report
    try:
        report.duration = media.info.duration
        if media.video is not None:
            video = media.video.codec_context
            report.width, report.height = video.width, video.height
            report.fps = round(media.info.video.fps, 3) if media.info.video else 0.0
            avc = media.avc
            name = PROFILES.get(avc.profile_idc, f"profile {avc.profile_idc}") if avc else "?"
            level = f" {avc.level_idc / 10:g}" if avc else ""
            report.video = f"H.264 {name}{level}"
            report.b_frames = media.has_b_frames
        if media.audio is not None:
            audio = media.audio.codec_context
            channels = {1: "mono", 2: "stereo"}.get(audio.channels, f"{audio.channels} ch")
            report.audio = f"AAC {audio.sample_rate} Hz {channels}"
    finally:
        media.close()
    if audio_check and report.audio:
        report.bad_audio_frames = undecodable_aac_frames(path)
    report.verdict = REENCODED if report.b_frames else PLAYS
    if report.b_frames:
        report.reason = (
            "B-frames: the server re-encodes the video for every play "
            "(python -m wcs prepare removes them once)"
        )
    if not report.faststart:
        report.notes.append(
            "moov after mdat: plays, but S3 playback must read the file's "
            "end first (python -m wcs prepare moves it, no re-encode)"
        )
    if report.bad_audio_frames:
        report.notes.append(
            f"{report.bad_audio_frames} undecodable AAC frames: dropped as "
            "they play (python -m wcs prepare re-encodes the audio)"
        )
    if not report.video:
        report.notes.append("audio only: WebRTC pages show no picture")
    return report


def undecodable_aac_frames(path: Path) -> int:
    """How many of the file's AAC frames do not decode (the server drops each)."""
    bad = 0
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        for packet in container.demux(stream):
            if packet.size == 0:
                continue
            try:
                stream.codec_context.decode(packet)
            except av.FFmpegError:
                bad += 1
    return bad
