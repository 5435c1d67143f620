"""aiortc viewers over ICE-TCP (``testkit/ice_tcp_client.py``) against the real
server: a full viewer decodes every frame of a file played with ``transport:
"TCP"``; TCP viewers that never read after DTLS (and never give up) cost the
server a bounded amount, their packets are refused rather than queued, the
server ends their plays FAILED once their consent lapses, and the viewers of the
same broadcast beside them play on at full rate."""

from __future__ import annotations

import asyncio
import itertools
import statistics
import subprocess
import time
from pathlib import Path

import pytest

from bench.vod_personal import tree_times
from testkit.cheap_viewers import Counter, packet_rate
from testkit.ice_tcp_client import TcpViewer, play_tcp
from testkit.rtc_client import run
from tests.test_e2e_metrics import read as read_metrics
from tests.test_e2e_metrics import value
from tools.makemedia import frames_in, make_mp4
from wcs.media.mp4 import Mp4File

#: Viewers that never read, in the hostile test.
DEAF = 4
#: Seconds the server's memory and the other viewers are watched.
WINDOW = 10.0
#: Longest the sockets' filling and the server's own warm-up are waited for (s).
WARM_UP = 25
#: The consent checks of aioice (5 s apart, six unanswered end the connection),
#: with room for a loaded machine.
CONSENT_LAPSE = 30.0 + 30.0


def candidates(sdp: str) -> list[str]:
    return [line for line in sdp.splitlines() if line.startswith("a=candidate:")]


def test_a_full_viewer_decodes_every_frame_of_a_file_over_tcp(start_server, media):
    server = start_server(media_dir=str(media))
    got = run(play_tcp(server.ws_url, "vod://main.mp4", timeout=30), timeout=60)
    assert got.statuses == ["PENDING", "PLAYING", "STOPPED"], (got.statuses, got.infos)
    offered = candidates(got.answer)
    assert offered and all(" tcp " in c.lower() and "tcptype passive" in c for c in offered)
    assert got.over_tcp, "the nominated pair is not the active TCP candidate"
    assert got.remote is not None and got.remote[1] == server.ports["ice_tcp_port"]
    expected = frames_in(media / "main.mp4")
    # aiortc releases a frame when the next one starts: all but the last
    assert len(got.decoded.video) == expected - 1
    assert server.saw(f"released after sending {expected} video")
    pts = [row[1] for row in got.decoded.video]
    assert all(b - a == 3000 for a, b in itertools.pairwise(pts)), "30 fps, in order"
    assert {(row[2], row[3]) for row in got.decoded.video} == {(640, 360)}
    assert 28.5 < got.decoded.fps() < 31.5
    audio_rate = (len(got.decoded.audio) - 1) / (got.decoded.audio[-1][0] - got.decoded.audio[0][0])
    assert 48 < audio_rate < 52


@pytest.fixture(scope="module")
def heavy(tmp_path_factory) -> Path:
    """A 3.8 Mb/s clip (~470 kB/s): what a server that queued for a viewer that
    never reads would hold shows in its RSS within seconds. Short, so that the
    server's own warm-up (its first loops through the file) ends soon."""
    folder = tmp_path_factory.mktemp("heavy")
    return make_mp4(folder / "heavy.mp4", seconds=4, bitrate="4000k", barcode=True)


def rss(server) -> int:
    """The server's processes' resident memory (supervisor and workers), bytes."""
    return tree_times(server.process.pid)[2]


def send_queues(port: int) -> list[int]:
    """The bytes the kernel holds unsent or unacknowledged on each of the server's
    connections from ``port`` (this test's network namespace is the server's)."""
    found = subprocess.run(
        ["ss", "-tnH", "state", "established", f"( sport = :{port} )"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return [int(line.split()[1]) for line in found.splitlines() if line.strip()]


def sent_packets(server) -> float:
    """RTP packets the server's WebRTC senders handed to the kernel (all workers):
    a packet its ICE-TCP sink refused is not counted."""
    return value(read_metrics(server), "wcsvod_sent_packets_total", provider="WebRTC")


@pytest.mark.alone  # the rate of the viewers beside, and the server's RSS
def test_tcp_viewers_that_never_read_are_bounded_and_the_others_play_on(start_server, heavy):
    server = start_server(media_dir=str(heavy.parent), vod_live_loop="true")
    name = "vod-live://heavy.mp4"
    rate = packet_rate(heavy)  # RTP packets a second, per viewer
    clip = Mp4File(heavy, "rate")
    byte_rate = heavy.stat().st_size / clip.info.duration  # bytes a second, per viewer
    clip.close()
    deaf = [TcpViewer() for _ in range(DEAF)]
    full, cheap = TcpViewer(), TcpViewer()
    figures: dict[str, float] = {}
    memory: list[int] = []

    async def scenario() -> None:
        counter = Counter()
        stop = asyncio.Event()
        tasks = [
            asyncio.ensure_future(
                play_tcp(
                    server.ws_url,
                    name,
                    mode,
                    counter=counter,
                    timeout=180,
                    stop_event=stop,
                    viewer=viewer,
                )
            )
            for mode, viewer in [("deaf", v) for v in deaf] + [("full", full), ("cheap", cheap)]
        ]
        everyone = [*deaf, full, cheap]
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not all(v.connected_at for v in everyone):
            await asyncio.sleep(0.1)
        assert all(v.connected_at for v in everyone), [v.statuses + v.infos for v in everyone]
        # Before the window: the deaf viewers' sockets fill (the server's kernel
        # send buffers grow to tcp_wmem's largest, ~4 MiB on loopback: ~9 s of this
        # clip), and each worker's RSS grows for a few seconds as its broadcast
        # first loops through the file (as much with no deaf viewer). The window
        # begins once both are still (a server that queued would not be).
        port = server.ports["ice_tcp_port"]
        rsses, queued = [rss(server)], [sum(send_queues(port))]
        while len(rsses) < WARM_UP:
            await asyncio.sleep(1.0)
            rsses.append(rss(server))
            queued.append(sum(send_queues(port)))
            if len(rsses) > 2 and rsses[-1] - rsses[-3] < 2**19 and queued[-1] - queued[-3] < 2**16:
                break
        figures["kernel_queued"] = queued[-1]
        sent0 = await asyncio.to_thread(sent_packets, server)
        counted0, frames0, t0 = cheap.rtp, len(full.decoded.video), time.monotonic()
        memory.append(rss(server))
        while time.monotonic() < t0 + WINDOW:
            await asyncio.sleep(1.0)
            memory.append(rss(server))
        sent1 = await asyncio.to_thread(sent_packets, server)
        figures["kernel_queued_after"] = sum(send_queues(port))
        counted1, frames1, t1 = cheap.rtp, len(full.decoded.video), time.monotonic()
        figures.update(
            seconds=t1 - t0,
            sent=sent1 - sent0,
            counted=counted1 - counted0,
            frames=frames1 - frames0,
        )
        # then the server's own consent checks decide (the deaf viewers never give up)
        deadline = time.monotonic() + CONSENT_LAPSE
        while time.monotonic() < deadline and not all(v.statuses[-1:] == ["FAILED"] for v in deaf):
            await asyncio.sleep(0.5)
        figures["others_playing"] = float(full.statuses[-1:] == cheap.statuses[-1:] == ["PLAYING"])
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
        counter.stop()

    run(scenario(), timeout=180)
    seconds = figures["seconds"]
    print(f"packets a second per viewer {rate:.0f}; {figures}; RSS {memory}")
    # the viewers beside play on: every packet, every frame, at the file's pace
    assert figures["counted"] >= 0.95 * rate * seconds, (figures, rate)
    assert figures["frames"] >= 0.9 * 30 * seconds, figures
    arrivals = [row[0] for row in full.decoded.video]
    assert 28.5 < 1 / statistics.median(b - a for a, b in itertools.pairwise(arrivals)) < 31.5
    numbers = full.decoded.numbers[len(full.decoded.numbers) // 4 :]
    assert all(b == a + 1 or b == 0 for a, b in itertools.pairwise(numbers)), numbers
    # the deaf viewers' packets were refused once their sockets filled: the server
    # handed the kernel the two readers' packets and a trickle more (the kernel
    # lets a full connection take a little now and then), not six viewers' worth
    deaf_taken = figures["sent"] - 2 * rate * seconds
    assert -0.1 * rate * seconds < deaf_taken < 0.25 * DEAF * rate * seconds, (figures, rate)
    # and nothing queued for them: queueing would have grown the RSS by this much
    would_queue = DEAF * byte_rate * seconds
    growth = max(memory) - memory[0]
    assert growth < min(would_queue / 3, 8 * 2**20), (growth, would_queue, memory)
    # the server ends them itself, once their consent lapses; not the others
    for viewer in deaf:
        assert viewer.statuses[:2] == ["PENDING", "PLAYING"], viewer.statuses
        assert viewer.statuses[-1] == "FAILED", (viewer.statuses, viewer.infos)
        assert "connection was lost" in viewer.infos[-1], viewer.infos
    assert figures["others_playing"], (full.statuses, cheap.statuses)
    assert full.statuses[-1] == cheap.statuses[-1] == "STOPPED"
    assert "Traceback" not in server.log()
