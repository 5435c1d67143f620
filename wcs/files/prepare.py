"""A file that plays without re-encoding, written from one that would not.

Only what is needed is done: the samples are copied as they are and
``moov`` put first (faststart); the video is re-encoded without B-frames
only when it has them (x264, keyframes where the source had them, about
the source's bitrate); the audio is re-encoded only when some of its AAC
frames do not decode (those are left out). What was done is returned as
sentences, for ``python -m wcs prepare`` to print.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path
from typing import cast

import av

from wcs.files.inspect import WILL_NOT_PLAY, inspect
from wcs.media.reencode import DEFAULT_BITRATE


class CannotPrepare(Exception):
    """The input will not play, and nothing here can make it."""


#: progress(fraction done) — called as the file is written.
Progress = Callable[[float], None]


def prepare(source: Path, target: Path, progress: Progress = lambda done: None) -> list[str]:
    """Write ``target`` from ``source``; what was done, a sentence each."""
    report = inspect(source)
    if report.verdict == WILL_NOT_PLAY:
        raise CannotPrepare(f"{source}: {report.reason}")
    if source.resolve() == target.resolve():
        raise CannotPrepare("write to another file than the input")
    video_again = report.b_frames
    audio_again = report.bad_audio_frames > 0
    done: list[str] = []
    duration = max(report.duration, 0.001)
    partial = target.with_name(f".{target.name}.partial")
    with (
        av.open(str(source)) as inside,
        av.open(str(partial), "w", format="mp4", options={"movflags": "+faststart"}) as out,
    ):
        streams: dict[int, av.VideoStream | av.AudioStream] = {}
        encoders: dict[int, av.VideoCodecContext | av.AudioCodecContext] = {}
        chosen: list[av.VideoStream | av.AudioStream] = [
            *inside.streams.video[:1],
            *inside.streams.audio[:1],
        ]
        for stream in chosen:
            if isinstance(stream, av.VideoStream) and video_again:
                streams[stream.index] = _video_encoder(out, stream)
            elif isinstance(stream, av.AudioStream) and audio_again:
                streams[stream.index] = _audio_encoder(out, stream)
            else:
                streams[stream.index] = out.add_stream_from_template(stream)
            encoders[stream.index] = stream.codec_context
        dropped = frames = 0
        last = time.monotonic()
        for packet in inside.demux(*[inside.streams[i] for i in streams]):
            target_stream = streams[packet.stream.index]
            again = (packet.stream.type == "video" and video_again) or (
                packet.stream.type == "audio" and audio_again
            )
            if not again:
                if packet.dts is None:
                    continue  # the demuxer's flush packet
                packet.stream = target_stream
                out.mux(packet)
            else:
                try:
                    decoded = encoders[packet.stream.index].decode(packet if packet.size else None)
                except av.FFmpegError:
                    dropped += 1
                    continue
                # a video stream's frames, to its encoder (_video_encoder's); or audio's
                for frame in decoded:
                    if isinstance(frame, av.VideoFrame):
                        frame.pict_type = (
                            av.video.frame.PictureType.I
                            if frame.key_frame
                            else av.video.frame.PictureType.NONE
                        )
                        frames += 1
                        out.mux(cast(av.VideoStream, target_stream).encode(frame))
                    else:
                        frame.pts = None
                        out.mux(cast(av.AudioStream, target_stream).encode(frame))
            if packet.pts is not None and time.monotonic() - last > 0.2:
                last = time.monotonic()
                progress(min(float(packet.pts * packet.time_base) / duration, 1.0))
        for index, stream in streams.items():
            if (
                stream.codec_context.is_encoder
                and stream.codec_context.is_open
                and (
                    (inside.streams[index].type == "video" and video_again)
                    or (inside.streams[index].type == "audio" and audio_again)
                )
            ):
                out.mux(stream.encode(None))
    partial.replace(target)
    progress(1.0)
    done.append(
        "moov first (faststart)"
        + ("; samples copied as they are" if not (video_again or audio_again) else "")
    )
    if video_again:
        done.append(f"video re-encoded without B-frames ({frames} frames, x264 High)")
    elif report.video:
        done.append("video copied as it is")
    if audio_again:
        done.append(f"audio re-encoded: {dropped} undecodable AAC frames left out")
    elif report.audio:
        done.append("audio copied as it is")
    return done


def _video_encoder(out: av.container.OutputContainer, stream: av.VideoStream) -> av.VideoStream:
    rate = stream.average_rate or stream.guessed_rate or Fraction(30)
    encoded = out.add_stream("libx264", rate=rate)
    encoded.width = stream.codec_context.width
    encoded.height = stream.codec_context.height
    encoded.pix_fmt = "yuv420p"
    encoded.bit_rate = stream.bit_rate or stream.codec_context.bit_rate or DEFAULT_BITRATE
    encoded.options = {
        "preset": "medium",
        "bf": "0",
        "profile": "high",
        "x264-params": "scenecut=0",
    }
    time_base = stream.time_base
    assert time_base is not None  # a demuxed stream's
    encoded.time_base = time_base  # the decoded frames' pts are in it
    encoded.codec_context.time_base = time_base
    return encoded


def _audio_encoder(out: av.container.OutputContainer, stream: av.AudioStream) -> av.AudioStream:
    context = stream.codec_context
    encoded = out.add_stream("aac", rate=context.sample_rate)
    encoded.layout = context.layout.name
    encoded.bit_rate = stream.bit_rate or context.bit_rate or 128_000
    return encoded


def bar(done: float, width: int = 30) -> None:
    """A progress bar on the terminal (nothing when stderr is not one)."""
    if sys.stderr.isatty():
        filled = int(done * width)
        sys.stderr.write(f"\r[{'#' * filled}{' ' * (width - filled)}] {done * 100:5.1f}%")
        if done >= 1.0:
            sys.stderr.write("\n")
        sys.stderr.flush()
