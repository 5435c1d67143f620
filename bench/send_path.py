"""The WebRTC send path alone: ``send_all`` of a real broadcast's samples to
many viewers' streams, in this process, with and without UDP GSO, turn by turn.

``bench/live_fanout.py`` measures the whole server with real peers, but on two
cores its counting clients share the machine, and its figures move by 15 % from
run to run. Here nothing else runs: each viewer is an ``RtpStream`` with a libsrtp
session and a UDP socket of its own, sending to a receiving socket on loopback
(drained between samples, outside the measured time; on loopback the receivers'
delivery runs on the sending CPU and is counted, as it is for the server), and
the CPU time of each ``send_all`` call is summed. The samples are the 0.5 Mb/s
broadcast's (640x360 H.264 at 450 kb/s, cut by the packetizer; 50 audio packets
a second of 160 bytes, as Opus at 64 kb/s). Rounds alternate GSO on and off, so
both meet the same machine; printed: µs of CPU per packet per viewer for each,
and their ratio.

Run with ``scripts/bench.sh bench/send_path.py [--viewers 1000] [--rounds 6]``;
``--smoke`` sends to ten viewers.
"""

from __future__ import annotations

import argparse
import os
import resource
import socket
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import av
from pylibsrtp import Policy, Session

from testkit.harness import require_loopback_only
from tools.makemedia import make_mp4
from wcs.webrtc.internals import h264_payloads
from wcs.webrtc.rtpstream import open_stream, send_all

SECONDS = 10
#: One-byte header extensions as aiortc writes them for video (mid, abs-send-time).
EXTENSION = b"\xbe\xde\x00\x02" + b"\x10\x31" + b"\x32\x00\x00\x00" + b"\x00\x00"


def broadcast(clip: Path) -> list[tuple[str, tuple[bytes, ...], bool]]:
    """The clip's first ``SECONDS`` as (kind, payloads, keyframe) in sending order."""
    samples = []
    with av.open(str(clip)) as container:
        stream = container.streams.video[0]
        for packet in container.demux(stream):
            if packet.size == 0 or packet.pts is None:
                continue
            if float(packet.pts * stream.time_base) >= SECONDS:
                break
            data, annexb = bytes(packet), b""
            while data:  # MP4's length-prefixed NAL units as Annex B
                length = int.from_bytes(data[:4], "big")
                annexb += b"\x00\x00\x00\x01" + data[4 : 4 + length]
                data = data[4 + length :]
            samples.append(("video", h264_payloads(annexb), bool(packet.is_keyframe)))
    audio = (os.urandom(160),)
    mixed: list[tuple[str, tuple[bytes, ...], bool]] = []
    for index, sample in enumerate(samples):  # 30 video and 50 audio a second
        mixed.append(sample)
        while len([m for m in mixed if m[0] == "audio"]) < (index + 1) * 50 // 30:
            mixed.append(("audio", audio, True))
    return mixed


def viewers(count: int, gso: bool) -> tuple[dict[str, list], list[socket.socket], list]:
    receivers = []
    for _ in range(max(1, count // 20)):
        sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sink.bind(("127.0.0.1", 0))
        sink.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)
        sink.setblocking(False)
        receivers.append(sink)
    streams: dict[str, list] = {"video": [], "audio": []}
    keep = []
    for index in range(count):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("127.0.0.1", 0))
        keys = Session(
            Policy(
                key=os.urandom(30),
                ssrc_type=Policy.SSRC_ANY_OUTBOUND,
                srtp_profile=Policy.SRTP_PROFILE_AES128_CM_SHA1_80,
            )
        )
        target = receivers[index % len(receivers)].getsockname()
        for kind in ("video", "audio"):
            streams[kind].append(
                open_stream(
                    sock,
                    target,
                    keys,
                    1000 + index,
                    96,
                    0,
                    0,
                    EXTENSION,
                    7,
                    kind == "video",
                    gso=gso,
                )
            )
        keep += [sock, keys]
    return streams, receivers, keep


def drain(receivers: list[socket.socket]) -> int:
    got = 0
    for sink in receivers:
        while True:
            try:
                sink.recv(2048)
            except BlockingIOError:
                break
            got += 1
    return got


def one_round(samples: list, count: int, gso: bool) -> tuple[float, int, int]:
    """(CPU seconds in send_all, packets sent, packets received)."""
    streams, receivers, keep = viewers(count, gso)
    used, received = 0.0, 0
    ts = 0
    for kind, payloads, keyframe in samples:
        ts += 3000 if kind == "video" else 960
        before = resource.getrusage(resource.RUSAGE_SELF)
        send_all(streams[kind], payloads, ts, keyframe, 0x123456, 1.0)
        after = resource.getrusage(resource.RUSAGE_SELF)
        used += after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
        received += drain(receivers)
    sent = sum(s.packets for kind in streams for s in streams[kind])
    for kind in streams:
        for stream in streams[kind]:
            stream.close()
    for sock in receivers + [k for k in keep if isinstance(k, socket.socket)]:
        sock.close()
    return used, sent, received


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--viewers", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=6, help="of each, alternating")
    parser.add_argument("--smoke", action="store_true", help="ten viewers, one round each")
    args = parser.parse_args()
    if args.smoke:
        args.viewers, args.rounds = 10, 1
    require_loopback_only()
    folder = Path(tempfile.mkdtemp(prefix="wcsvod-send-"))
    clip = make_mp4(folder / "clip.mp4", seconds=SECONDS, profile="baseline", bitrate="450k")
    samples = broadcast(clip)
    packets = sum(len(p) for _, p, _ in samples)
    print(
        f"{len(samples)} samples, {packets} packets ({packets / SECONDS:.0f} a second) "
        f"to {args.viewers} viewers"
    )
    figures: dict[bool, list[float]] = {True: [], False: []}
    for _ in range(args.rounds):
        for gso in (True, False):
            used, sent, received = one_round(samples, args.viewers, gso)
            figures[gso].append(used * 1e6 / sent)
            print(
                f"  GSO {'on ' if gso else 'off'}: {used * 1e6 / sent:.2f} µs per packet per "
                f"viewer, {received / sent * 100:.1f}% received"
            )
    on, off = statistics.median(figures[True]), statistics.median(figures[False])
    print(
        f"median µs per packet per viewer: GSO on {on:.2f}, off {off:.2f}; "
        f"off / on = {off / on:.2f}x"
    )


if __name__ == "__main__":
    main()
