"""Deterministic release, end to end: viewers come and go by the hundred and the
server is left as it was; viewers that vanish are noticed and ended.

The server runs under :mod:`testkit.census`, with its garbage collector off: an
object that only a reference cycle held stays counted (and keeps whatever
threads it owns), so what these tests see is what reference counting freed.
"""


from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription

from testkit.cheap_viewers import CheapViewer, Counter, watch
from testkit.harness import ServerProcess, run
from testkit.mse_client import watch as watch_mse
from testkit.rtc_client import AsyncWebSocket, play
from wcs.webrtc.viewer import LOST

#: What a viewer or a play holds while it runs, and nothing may hold once it ended.
PER_PLAY = (
    "wcs.streams.stream.VodStream", "wcs.media.pump.Pump", "wcs.streams.fanout.Broadcast",
    "wcs.sources.OpenedMedia", "wcs.media.mp4.Mp4File", "wcs.media.audio.OpusTranscoder",
    "wcs.signalling.playing.Playback", "wcs.signalling.session.Session",
    "wcs.mse.viewer.MseViewer", "wcs.mse.packetizer.MsePacketizer",
    "wcs.webrtc.viewer.WebRTCViewer", "wcs.webrtc.viewer.WebRTCViewer.Batch",
    "wcs.webrtc.sender.FastSender", "wcs.webrtc.peer.Peer",
    "aiortc.rtcdtlstransport.RTCDtlsTransport", "aiortc.rtcicetransport.RTCIceTransport",
    "aiortc.rtcrtptransceiver.RTCRtpTransceiver", "aioice.ice.Connection",
    "aioice.ice.StunProtocol", "pylibsrtp.Session", "av.audio.resampler.AudioResampler",
    "av.container.input.InputContainer",
)
#: Still freed only by the collector, by a library's own cycle holding no thread,
#: socket or codec: pyOpenSSL's (its verify callback helper and the ffi callback
#: that closes over it, one per DTLS context, so per WebRTC viewer).
KNOWN_CYCLES = ("OpenSSL.SSL._VerifyHelper", "_cffi_backend.__CDataOwnGC")
#: Batches of viewers at once (half MSE, half WebRTC), and how long each plays.
BATCH, SECONDS = 50, 1.0


class Census:
    """The server's own count of itself (see :mod:`testkit.census`)."""

    def __init__(self, server: ServerProcess, out: Path) -> None:
        self.server, self.out = server, out

    def take(self, collect: bool = False) -> dict[str, Any]:
        self.out.unlink(missing_ok=True)
        assert self.server.process is not None
        os.kill(self.server.process.pid, signal.SIGUSR2 if collect else signal.SIGUSR1)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.out.exists():
                return json.loads(self.out.read_text())
            time.sleep(0.05)
        raise AssertionError("the server wrote no census")


class Peak(threading.Thread):
    """The most threads and RSS (KiB) the server reached while it was watched."""

    def __init__(self, server: ServerProcess) -> None:
        super().__init__(daemon=True)
        assert server.process is not None
        self.path = f"/proc/{server.process.pid}/status"
        self.threads = self.rss = 0
        self.done = threading.Event()

    def __enter__(self) -> Peak:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.done.set()
        self.join()

    def run(self) -> None:
        while not self.done.wait(0.1):
            with open(self.path) as status:
                for line in status:
                    if line.startswith("Threads:"):
                        self.threads = max(self.threads, int(line.split()[1]))
                    elif line.startswith("VmRSS:"):
                        self.rss = max(self.rss, int(line.split()[1]))


def start(start_server, tmp_path: Path, media: Path, *options: str, **settings: str):
    """The server as one process (``workers=1``): the census counts the objects,
    threads and memory of the process it runs in."""
    out = tmp_path / "census.json"
    settings.setdefault("workers", "1")
    server = start_server(wrap=[sys.executable, "-m", "testkit.census", str(out), *options],
                          media_dir=str(media), **settings)
    return server, Census(server, out)


async def mse_viewer(ws_url: str) -> tuple[list[str], int]:
    got = await watch_mse(ws_url, "vod://main.mp4", SECONDS)
    return got.statuses, got.bytes


async def rtc_viewer(ws_url: str, counter: Counter) -> tuple[list[str], int]:
    viewer, stop = CheapViewer(), asyncio.Event()
    task = asyncio.ensure_future(watch(ws_url, "vod://main.mp4", counter, stop, timeout=60,
                                       viewer=viewer))
    # SECONDS of play: counted from PLAYING (under load the DTLS handshakes of a
    # batch of 25 can take longer than a play), the watch's timeout bounds the wait
    while "PLAYING" not in viewer.statuses and not task.done():
        await asyncio.sleep(0.05)
    await asyncio.sleep(SECONDS)
    stop.set()
    await task
    return viewer.statuses, viewer.rtp


async def crowd(ws_url: str, batches: int) -> list[tuple[str, list[str], int]]:
    """``batches`` × ``BATCH`` viewers, half MSE and half WebRTC, a batch at a time."""
    counter = Counter()
    results: list[tuple[str, list[str], int]] = []
    for _ in range(batches):
        half = BATCH // 2
        done = await asyncio.gather(*[mse_viewer(ws_url) for _ in range(half)],
                                    *[rtc_viewer(ws_url, counter) for _ in range(half)])
        results += [("MSE" if n < half else "WebRTC", *got) for n, got in enumerate(done)]
    counter.stop()
    await asyncio.sleep(0.5)  # the last sockets' closes go out
    return results


def settled(census: Census, baseline: dict[str, Any], timeout: float = 20.0
            ) -> dict[str, Any]:
    """The census once every play's objects are gone (or the last one taken)."""
    deadline = time.monotonic() + timeout
    while True:
        now = census.take()
        left = {name: now["types"].get(name, 0) - baseline["types"].get(name, 0)
                for name in PER_PLAY}
        if not any(left.values()) and now["Threads"] <= baseline["Threads"]:
            return now
        if time.monotonic() > deadline:
            return now
        time.sleep(0.5)


@pytest.mark.alone  # a load test: no other test beside it
def test_250_viewers_come_and_go_and_the_server_is_left_as_it_was(start_server, media,
                                                                    tmp_path):
    # the Opus cache off: every play transcodes its own audio (FFmpeg threads)
    server, census = start(start_server, tmp_path, media, "--no-gc",
                           vod_audio_cache_size="0")
    warm = run(crowd(server.ws_url, 1))  # thread pools and caches that stay, started
    assert all(statuses[-1] == "STOPPED" for _, statuses, _ in warm)
    time.sleep(2)
    baseline = census.take(collect=True)  # start-up garbage collected, once
    began = time.monotonic()
    with Peak(server) as peak:
        results = run(crowd(server.ws_url, 5), timeout=600)  # (the soak bench runs more)
    took = time.monotonic() - began
    after = settled(census, baseline)
    collected = census.take(collect=True)
    print(f"\n250 viewers in {took:.0f} s; threads {baseline['Threads']} -> "
          f"{peak.threads} at most -> {after['Threads']}, RSS {baseline['VmRSS'] // 1024} -> "
          f"{peak.rss // 1024} at most -> "
          f"{after['VmRSS'] // 1024} MiB ({collected['VmRSS'] // 1024} MiB after a "
          f"collection), descriptors {baseline['fds']} -> {after['fds']}; "
          f"the collection then freed {collected['collected']} objects")

    assert len(results) == 250
    assert peak.threads > baseline["Threads"] + 50  # each play's transcoder had threads
    for kind, statuses, received in results:
        assert statuses == ["PENDING", "PLAYING", "STOPPED"], (kind, statuses)
        assert received > 0, kind
    left = {name: after["types"].get(name, 0) - baseline["types"].get(name, 0)
            for name in PER_PLAY}
    assert not any(left.values()), f"held after the plays ended (gc off): {left}"
    assert after["Threads"] == baseline["Threads"], "threads outlived their viewers"
    assert after["fds"] <= baseline["fds"] + 2
    # what only the collector could free: nothing of a play, only the known cycles
    freed = {name: count for name, count in collected["freed_by_gc"].items()
             if not name.startswith(("builtins.", *KNOWN_CYCLES))}
    assert freed == {}, f"freed only by the garbage collector: {freed}"
    assert after["VmRSS"] - baseline["VmRSS"] < 64 * 1024, "RSS grew by more than 64 MiB"
    log = server.log()
    assert log.count("released after sending") == len(results) + len(warm)  # warm-up too
    assert "never retrieved" not in log and "Traceback" not in log


def test_a_viewer_that_vanishes_is_ended_failed_and_released(start_server, media, tmp_path):
    """It closes its sockets without a word: aiortc's consent checks (shortened
    here from 5 s to 0.2 s apart) give up, and the play ends FAILED saying why."""
    server, _ = start(start_server, tmp_path, media, "--consent-interval", "0.2")
    began = time.monotonic()
    got = run(play(server.ws_url, "vod://main.mp4", read=False, vanish_after=1.0,
                   timeout=20))
    assert got.statuses == ["PENDING", "PLAYING", "FAILED"]
    assert got.infos[-1] == LOST
    # six missed checks ~0.2 s apart, not 20 s (the client's own teardown after, with
    # its sockets gone, is not the server's to count)
    print(f"FAILED {got.status_times[-1] - began:.2f} s after the play began")
    assert got.status_times[-1] - began < 8
    deadline = time.monotonic() + 5
    while "released after sending" not in server.log() and time.monotonic() < deadline:
        time.sleep(0.1)
    log = server.log()
    assert "released after sending" in log  # unsubscribed: its personal stream is gone
    assert "never retrieved" not in log and "Traceback" not in log


def test_a_viewer_that_closes_its_peer_is_ended_failed(start_server, media, tmp_path):
    """Its peer connection closed (a DTLS close) while its page stays: aiortc closes
    the server's side by itself, and the play ends rather than saying PLAYING."""
    server, _ = start(start_server, tmp_path, media)
    got = run(play(server.ws_url, "vod://main.mp4", read=False, close_peer_after=1.0,
                   timeout=10))
    assert got.statuses == ["PENDING", "PLAYING", "FAILED"]
    assert got.infos[-1] == LOST
    assert "never retrieved" not in server.log()


def test_a_stop_just_after_the_peer_closed_still_ends_stopped(start_server, media, tmp_path):
    """The SDK's Stop sends stopStream and closes its peer at once, and the
    close's datagram may be read first (seen on a busy CI): the play still ends
    STOPPED, not FAILED "connection was lost"."""
    server, _ = start(start_server, tmp_path, media)
    got = run(play(server.ws_url, "vod://main.mp4", read=False, close_peer_after=1.0,
                   stop_after=1.4, timeout=10))
    assert got.statuses == ["PENDING", "PLAYING", "STOPPED"], got.infos
    assert "never retrieved" not in server.log()


async def stopped_while_connecting(ws_url: str, delay: float) -> list[str]:
    """Answer the server's answer, then stop after ``delay``: mid-ICE or mid-DTLS."""
    ws = await AsyncWebSocket.connect(ws_url)
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    statuses: list[str] = []
    try:
        await ws.send("connection", {"appKey": "defaultApp"})
        await ws.receive_json()
        pc.addTransceiver("audio", direction="recvonly")
        pc.addTransceiver("video", direction="recvonly")
        await pc.setLocalDescription(await pc.createOffer())
        request = {"mediaSessionId": str(uuid.uuid1()), "name": "vod://main.mp4",
                   "mediaProvider": "WebRTC", "sdp": pc.localDescription.sdp}
        await ws.send("playStream", request)
        while not statuses or statuses[-1] not in ("STOPPED", "FAILED"):
            message = await asyncio.wait_for(ws.receive_json(), 10)
            if message["message"] == "setRemoteSDP":
                await pc.setRemoteDescription(RTCSessionDescription(message["data"][1],
                                                                    "answer"))
                await asyncio.sleep(delay)
                await ws.send("stopStream", request)
            elif message["message"] == "notifyStreamStatusEvent":
                statuses.append(message["data"][0]["status"])
    finally:
        await pc.close()
        ws.close()
    return statuses


def test_plays_stopped_while_connecting_leave_no_task_errors(start_server, media, tmp_path):
    """aiortc's connect task used to fail unseen ("Task exception was never
    retrieved ... RTCIceTransport is closed") when the peer closed under it: 5 to
    10 times in these 40 plays before it was handled."""
    server, _ = start(start_server, tmp_path, media)

    async def all_of_them() -> list[list[str]]:
        statuses = await asyncio.gather(*[stopped_while_connecting(server.ws_url, n * 0.004)
                                          for n in range(40)])
        await asyncio.sleep(1.0)
        return statuses

    for statuses in run(all_of_them()):
        assert statuses[0] == "PENDING" and statuses[-1] == "STOPPED", statuses
    time.sleep(1.0)
    log = server.log()
    assert log.count("released after sending") == 40
    assert "never retrieved" not in log and "Traceback" not in log
