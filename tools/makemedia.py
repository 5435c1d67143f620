"""Makes test and sample MP4 files with Debian's ffmpeg (libx264 + AAC).

``python -m tools.makemedia media/sample.mp4`` regenerates the bundled sample.
The picture is ffmpeg's ``testsrc2`` (moving pattern, visible clock), so a
frozen or torn stream is easy to see; the sound is a steady tone.
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

PROFILES = ("baseline", "main", "high")
#: The frame number as 16 blocks across the top band, a sixteenth of the width each
#: (40 px at 640) and 32/360 of the height tall (32 px at 360), least significant bit
#: first: scaled with the picture, so a rendition of a file reads as the file does.
BARCODE = ("geq=lum='if(lt(Y,H*4/45),if(mod(floor(N/pow(2,floor(X*16/W))),2),235,16),lum(X,Y))'"
           ":cb='if(lt(Y,H*4/45),128,cb(X,Y))':cr='if(lt(Y,H*4/45),128,cr(X,Y))'")


#: A folder where files once made are kept and copied from (the test suite sets it
#: for one run, so its parallel processes encode each file once, not once each).
CACHE_VARIABLE = "WCSVOD_MEDIA_CACHE"


def _made_once(path: Path, recipe: list, make: Callable[[Path], None]) -> Path:
    """``make(path)``, or a copy of what the same recipe (the encoder's own
    arguments, but for the output) made before in this run's cache (a copy, not a
    link: a test may change its file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    folder = os.environ.get(CACHE_VARIABLE)
    if not folder:
        make(path)
        return path
    key = hashlib.sha256(json.dumps(recipe).encode()).hexdigest()
    kept = Path(folder) / f"{key[:24]}{path.suffix}"
    kept.parent.mkdir(parents=True, exist_ok=True)
    with open(kept.with_suffix(".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one process makes it; the others wait for it
        if not kept.exists():
            making = kept.with_name(f"making-{kept.name}")
            make(making)
            making.rename(kept)
    shutil.copyfile(kept, path)
    return path


def read_barcode(luma_row: bytes, width: int | None = None) -> int:
    """The frame number from one luma row inside the top band (``barcode_row``) of
    a picture ``width`` wide (a row may be longer: its line padding)."""
    width = len(luma_row) if width is None else min(width, len(luma_row))
    return sum(1 << bit for bit in range(16) if luma_row[(2 * bit + 1) * width // 32] > 128)


def barcode_row(height: int) -> int:
    """A luma row inside the barcode band of a picture ``height`` tall."""
    return height * 16 // 360


def frame_number(frame) -> int:  # type: ignore[no-untyped-def]
    """The barcode frame number of a decoded PyAV video frame (yuv420p)."""
    plane = frame.planes[0]
    at = barcode_row(frame.height) * plane.line_size
    return read_barcode(bytes(memoryview(plane)[at:at + plane.line_size]), frame.width)


def frames_in(path: Path) -> int:
    """How many video frames a file holds (its non-empty video packets)."""
    import av

    with av.open(str(path)) as container:
        return sum(1 for packet in container.demux(video=0) if packet.size)


def make_mp4(path: Path, *, seconds: float = 10.0, width: int = 640, height: int = 360,
             fps: int = 30, profile: str = "main", bframes: int = 0, gop: int = 60,
             video: bool = True, audio: bool = True, faststart: bool = True,
             audio_rate: int = 44100, bitrate: str = "280k", barcode: bool = False) -> Path:
    """Encode a test file; raises if ffmpeg is missing or fails.

    With ``barcode``, the top band carries the frame number (``BARCODE``; read it
    back with ``frame_number``).
    """
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        raise RuntimeError("ffmpeg is not installed (scripts/install.sh --test installs it)")
    if profile not in PROFILES:
        raise ValueError(f"profile must be one of {PROFILES}")
    if profile == "baseline" and bframes:
        raise ValueError("baseline H.264 has no B-frames")
    args = [ffmpeg, "-hide_banner", "-loglevel", "error", "-y"]
    if video:
        args += ["-f", "lavfi", "-i", f"testsrc2=size={width}x{height}:rate={fps}"]
    if audio:
        args += ["-f", "lavfi", "-i", f"sine=frequency=440:sample_rate={audio_rate}"]
    args += ["-t", str(seconds)]
    if video and barcode:
        args += ["-vf", BARCODE]
    if video:
        args += ["-c:v", "libx264", "-profile:v", profile, "-pix_fmt", "yuv420p",
                 "-preset", "veryfast", "-b:v", bitrate, "-maxrate", bitrate,
                 "-bufsize", bitrate, "-g", str(gop), "-keyint_min", str(gop),
                 "-sc_threshold", "0", "-bf", str(bframes)]
    if audio:
        args += ["-c:a", "aac", "-b:a", "64k", "-ac", "2"]
    if faststart:
        args += ["-movflags", "+faststart"]
    return _made_once(path, args[1:], lambda target: subprocess.run(
        args + ["-f", "mp4", str(target)], check=True, timeout=300))


def concat(part: Path, times: int, target: Path) -> Path:
    """``part`` ``times`` over as one MP4 (stream copy, ``moov`` first): a long
    file made in seconds."""
    listing = target.with_suffix(".txt")
    listing.write_text(f"file '{part}'\n" * times)
    recipe = ["concat", hashlib.sha256(part.read_bytes()).hexdigest(), times]
    return _made_once(target, recipe, lambda made: subprocess.run(
        ["ffmpeg", "-loglevel", "error", "-y", "-f", "concat", "-safe", "0", "-i", str(listing),
         "-c", "copy", "-movflags", "+faststart", "-f", "mp4", str(made)], check=True))


def make_camera(path: Path, *, seconds: float = 6.0, width: int = 640, height: int = 360,
                fps: int = 30) -> Path:
    """A barcoded raw video (Y4M) for Chromium's fake camera
    (``--use-file-for-fake-video-capture``), which it plays in a loop."""
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        raise RuntimeError("ffmpeg is not installed (scripts/install.sh --test installs it)")
    args = [ffmpeg, "-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi", "-i",
            f"testsrc2=size={width}x{height}:rate={fps}", "-t", str(seconds), "-vf", BARCODE,
            "-pix_fmt", "yuv420p", "-f", "yuv4mpegpipe"]
    return _made_once(path, args[1:], lambda target: subprocess.run(
        args + [str(target)], check=True, timeout=300))


def corrupt_audio(source: Path, target: Path, frames: int = 10, first: int = 20,
                  step: int = 10) -> int:
    """Copy ``source`` with ``frames`` AAC frames overwritten by 0xff bytes, which
    the AAC decoder refuses; returns how many were damaged."""
    import av

    with av.open(str(source)) as container:
        spots = [(p.pos, p.size) for p in container.demux(audio=0) if p.size]
    chosen = spots[first:first + frames * step:step]
    shutil.copyfile(source, target)
    with target.open("r+b") as handle:
        for position, size in chosen:
            handle.seek(position)
            handle.write(b"\xff" * size)
    return len(chosen)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("output", type=Path)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--profile", choices=PROFILES, default="main")
    parser.add_argument("--bframes", type=int, default=0)
    parser.add_argument("--size", default="640x360")
    args = parser.parse_args()
    width, height = (int(part) for part in args.size.split("x"))
    make_mp4(args.output, seconds=args.seconds, profile=args.profile,
             bframes=args.bframes, width=width, height=height)


if __name__ == "__main__":
    main()
