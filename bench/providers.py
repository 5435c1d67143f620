"""One broadcast, every provider: what a viewer costs the server over WebRTC,
WHEP, MSE, HLS and RTMP, at 100, 300 and 1,000 cheap viewers, in one run.

The broadcast is ``vod-live://clip.mp4`` started once by REST as ``show`` (640x360
H.264 at 450 kb/s with AAC: the 0.5 Mb/s broadcast of ``bench/live_fanout.py``).
Its cost alone is measured first; each row is then one provider's viewers:

- WebRTC and WHEP: ``testkit/cheap_viewers.py`` peers that finish ICE and DTLS, then
  count encrypted packets and bytes;
- MSE: the SDK's two WebSockets, the media socket drained by the same poller,
  counting bytes;
- HLS: HTTP/1.1 keep-alive clients that read the playlist every target duration
  and fetch each new segment (bytes counted, nothing parsed but the playlist);
- static: the HLS clients' requests made of plain files of the same sizes, from the
  server's static files (the anchor HLS is compared with);
- RTMP: REST ``/push/startup`` pushes, each to a counting RTMP sink
  (``bench/rtmp_push.py``'s).

Printed per row: viewers, connected, media bytes delivered against expected (the
file's byte rate × viewers × time; wire framing counts, so a little over 100 %),
server CPU, % of a core per viewer and ns per delivered byte, both net of the
broadcast alone, and the client's own CPU.

Run with ``scripts/bench.sh bench/providers.py [--counts 100,300,1000]
[--providers webrtc,whep,mse,hls,rtmp]``; ``--smoke`` runs two of each for 2 s.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import NamedTuple

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.live_fanout import SELF
from bench.rtmp_push import Sink
from testkit.cheap_viewers import CheapViewer, Counter, watch, watch_mse, watch_whep
from testkit.harness import LOAD_LIMITS, ServerProcess, require_loopback_only, run, split_url
from testkit.keepalive import KeepAlive
from testkit.procfs import proc_stat, tree_times
from testkit.rest_client import call
from tools.makemedia import make_mp4

MEASURE = 10.0
#: Seconds between all playing and the measurement, and after each row.
SETTLE = 3.0
#: Viewers started per second while a count fills up.
ARRIVALS = 50
NAME = "show"


class HlsViewer:
    """A live HLS client on one keep-alive connection: the playlist every target
    duration, then each segment it has not fetched; counts the bytes."""

    def __init__(self, hls_url: str) -> None:
        host, port, _ = split_url(hls_url)
        self.client = KeepAlive(host, int(port))
        self.bytes = 0  # media bodies (segments) only
        self.failed = ""
        self.connected_at: float | None = None
        self._seen: set[str] = set()

    @property
    def requests(self) -> int:
        return self.client.requests

    async def run(self, stop: asyncio.Event) -> None:
        """One connection, a turn (:meth:`_turn`) at a time until ``stop``."""
        try:
            await self.client.connect()
        except OSError as error:
            self.failed = str(error)
            return
        try:
            while not stop.is_set():
                wait = await self._turn(stop)
                try:
                    await asyncio.wait_for(stop.wait(), wait)
                except TimeoutError:
                    pass
        except (ConnectionError, asyncio.IncompleteReadError) as error:
            self.failed = f"connection: {error}"
        finally:
            self.client.close()

    async def _turn(self, stop: asyncio.Event) -> float:
        """The playlist, then each segment not yet fetched; the seconds to the next turn."""
        status, playlist = await self.client.get(f"/{NAME}/{NAME}.m3u8")
        if status != 200:
            self.failed = f"playlist {status}"
            return 1.0
        text = playlist.decode()
        target = float(re.search(r"#EXT-X-TARGETDURATION:(\d+)", text)[1])
        segments = [line for line in text.splitlines() if line and line[0] != "#"]
        if not self._seen:  # a live client starts at the end
            self._seen.update(segments[:-1])
        for uri in segments:
            if uri not in self._seen and not stop.is_set():
                self._seen.add(uri)
                await self._fetch(f"/{NAME}/{uri}")
        return target / 2

    async def _fetch(self, path: str) -> None:
        """A media request: its bytes counted; the first one is the client playing."""
        status, body = await self.client.get(path)
        if status == 200:
            self.bytes += len(body)
            if self.connected_at is None:
                self.connected_at = time.monotonic()


class StaticViewer(HlsViewer):
    """HLS's requests made of plain files: one the size of the playlist every half
    target duration, one the size of a segment every segment's duration, from the
    server's static files (``/client/records/``: Twisted's ``static.File``) on one
    keep-alive connection. The anchor HLS is measured against."""

    def __init__(self, http_url: str, shape: HlsShape) -> None:
        super().__init__(http_url)
        self.shape = shape
        self._last_segment: float | None = None  # (from the first turn on)

    async def _turn(self, stop: asyncio.Event) -> float:
        if self._last_segment is None:
            self._last_segment = time.monotonic()
        status, _ = await self.client.get(f"/client/records/{PLAYLIST_FILE}")
        if status != 200:
            self.failed = f"playlist-sized file {status}"
        if time.monotonic() - self._last_segment >= self.shape.seconds:
            self._last_segment += self.shape.seconds
            await self._fetch(f"/client/records/{SEGMENT_FILE}")
        return self.shape.target / 2


#: The static files a :class:`StaticViewer` reads, in the media folder.
PLAYLIST_FILE, SEGMENT_FILE = "playlist-sized.mp4", "segment-sized.mp4"


class HlsShape(NamedTuple):
    """What a live HLS client of the broadcast reads: the playlist's size, a
    segment's size and duration, and the target duration (polls every half)."""

    playlist: int
    segment: int
    seconds: float
    target: float


def hls_shape(server: ServerProcess) -> HlsShape:
    """The broadcast's HLS as it is now (the last full segment of its playlist)."""
    base = f"{server.hls_url}/{NAME}/"
    text = b""
    for _ in range(100):  # (its first segments take a few seconds to be made)
        try:
            text = urllib.request.urlopen(base + f"{NAME}.m3u8", timeout=10).read()
        except urllib.error.HTTPError:  # (not yet made)
            text = b""
        if re.search(rb"\n[^#\s][^\n]*\n", text):
            break
        time.sleep(0.2)
    playlist = text.decode()
    uri = [line for line in playlist.splitlines() if line and line[0] != "#"][-1]
    seconds = float(re.findall(r"#EXTINF:([\d.]+)", playlist)[-1])
    target = float(re.search(r"#EXT-X-TARGETDURATION:(\d+)", playlist)[1])
    segment = len(urllib.request.urlopen(base + uri, timeout=10).read())
    return HlsShape(len(text), segment, seconds, target)


async def measure(
    server: ServerProcess,
    start: Callable[[int, asyncio.Event], Awaitable[object]],
    viewers: int,
    connected: Callable[[], int],
    delivered: Callable[[], int],
) -> dict:
    """Start ``viewers`` (``start(index, stop)`` each), wait until they play, then
    server CPU and bytes delivered over ``MEASURE`` seconds."""
    assert server.process is not None
    stop = asyncio.Event()
    tasks = []
    began = time.monotonic()
    for index in range(viewers):
        tasks.append(asyncio.ensure_future(start(index, stop)))
        if index % ARRIVALS == ARRIVALS - 1:
            await asyncio.sleep(1.0)
    for _ in range(600):  # until all play, or 60 s after the last came
        if connected() >= viewers:
            break
        await asyncio.sleep(0.1)
    joined = time.monotonic() - began
    await asyncio.sleep(SETTLE)
    user0, system0, _ = tree_times(server.process.pid)
    me0, _ = proc_stat(SELF)
    bytes0, t0 = delivered(), time.monotonic()
    await asyncio.sleep(MEASURE)
    user1, system1, rss = tree_times(server.process.pid)
    me1, _ = proc_stat(SELF)
    bytes1, t1 = delivered(), time.monotonic()
    playing = connected()
    stop.set()
    await asyncio.gather(*tasks, return_exceptions=True)
    seconds = t1 - t0
    return {
        "viewers": viewers,
        "connected": playing,
        "joined": joined,
        "cpu": (user1 + system1 - user0 - system0) / seconds,
        "client": (me1 - me0) / seconds,
        "bytes": (bytes1 - bytes0) / seconds,
        "rss": rss,
    }


async def webrtc_row(server: ServerProcess, viewers: int, transport: str) -> dict:
    counter = Counter()
    views = [CheapViewer(transport=transport) for _ in range(viewers)]

    def start(index: int, stop: asyncio.Event) -> Awaitable[object]:
        if transport == "WHEP":
            return watch_whep(server.http_url, NAME, counter, stop, 600, views[index])
        return watch(server.ws_url, NAME, counter, stop, 600, views[index])

    try:
        return await measure(
            server,
            start,
            viewers,
            lambda: sum(v.connected_at is not None for v in views),
            lambda: sum(v.rtp_bytes for v in views),
        )
    finally:
        counter.stop()


async def mse_row(server: ServerProcess, viewers: int) -> dict:
    counter = Counter()
    views = [CheapViewer(transport="MSE") for _ in range(viewers)]
    try:
        return await measure(
            server,
            lambda i, stop: watch_mse(server.ws_url, NAME, counter, stop, 600, views[i]),
            viewers,
            lambda: sum(v.playing_at is not None for v in views),
            lambda: sum(v.bytes for v in views),
        )
    finally:
        counter.stop()


async def http_row(server: ServerProcess, views: list[HlsViewer], label: str) -> dict:
    """A row of HTTP clients (:class:`HlsViewer` or :class:`StaticViewer`)."""
    row = await measure(
        server,
        lambda i, stop: views[i].run(stop),
        len(views),
        lambda: sum(v.connected_at is not None for v in views),
        lambda: sum(v.bytes for v in views),
    )
    failed = [v.failed for v in views if v.failed]
    if failed:
        print(f"  {label}: {len(failed)} clients failed, e.g. {failed[0]}")
    return row


async def rtmp_row(server: ServerProcess, viewers: int) -> dict:
    sink = Sink()
    listener = await asyncio.start_server(sink.serve, "127.0.0.1", 0, backlog=1024)
    port = listener.sockets[0].getsockname()[1]
    ids: list[str] = []

    async def start(index: int, stop: asyncio.Event) -> None:
        status, push, _ = await asyncio.to_thread(
            call,
            server.http_url,
            "/rest-api/push/startup",
            {"streamName": NAME, "rtmpUrl": f"rtmp://127.0.0.1:{port}/app{index}"},
        )
        if status == 200:
            ids.append(push["mediaSessionId"])
        await stop.wait()

    try:
        return await measure(
            server,
            start,
            viewers,
            lambda: sum(1 for counted in sink.bytes if counted),
            lambda: sum(sink.bytes),
        )
    finally:
        for media_id in ids:
            await asyncio.to_thread(
                call, server.http_url, "/rest-api/push/terminate", {"mediaSessionId": media_id}
            )
        listener.close()


def start_broadcast(server: ServerProcess) -> None:
    """``vod-live://clip.mp4`` (looping) as the broadcast ``NAME``, started by REST."""
    status, body, _ = call(
        server.http_url,
        "/rest-api/vod/startup",
        {"uri": "vod-live://clip.mp4", "localStreamName": NAME},
    )
    assert status == 200, body


async def alone(server: ServerProcess) -> float:
    """Server CPU (cores) of the broadcast with nobody watching."""
    assert server.process is not None
    user0, system0, _ = tree_times(server.process.pid)
    t0 = time.monotonic()
    await asyncio.sleep(MEASURE)
    user1, system1, _ = tree_times(server.process.pid)
    return (user1 + system1 - user0 - system0) / (time.monotonic() - t0)


def main() -> None:
    global MEASURE, SETTLE
    parser = argparse.ArgumentParser()
    parser.add_argument("--counts", default="100,300,1000")
    parser.add_argument("--providers", default="webrtc,whep,mse,hls,static,rtmp")
    parser.add_argument("--smoke", action="store_true", help="two of each, 2 s")
    args = parser.parse_args()
    seconds = 60
    if args.smoke:
        args.counts, MEASURE, SETTLE, seconds = "2", 1.0, 0.5, 10
    counts = [int(c) for c in args.counts.split(",") if c]
    require_loopback_only()
    folder = Path(tempfile.mkdtemp(prefix="wcsvod-providers-"))
    clip = make_mp4(
        folder / "clip.mp4", seconds=seconds, profile="baseline", bitrate="450k", barcode=True
    )
    media_rate = clip.stat().st_size / seconds  # bytes a second per viewer
    print(f"broadcast: {media_rate * 8 / 1e6:.2f} Mb/s of media")
    server = ServerProcess(
        Path(tempfile.mkdtemp()),
        {
            "media_dir": str(folder),
            "vod_live_loop": "true",
            "max_pushes": "2000",
            **LOAD_LIMITS,
        },
    ).start()
    rows: dict[str, list[dict]] = {}
    try:
        start_broadcast(server)
        time.sleep(SETTLE)
        base = run(alone(server), timeout=60)
        print(f"the broadcast alone: {base * 100:.1f}% of a core")
        shape = hls_shape(server)
        (folder / PLAYLIST_FILE).write_bytes(bytes(shape.playlist))
        (folder / SEGMENT_FILE).write_bytes(bytes(shape.segment))
        print(
            f"HLS: a {shape.playlist} B playlist every {shape.target / 2:g} s, "
            f"a {shape.segment} B segment every {shape.seconds:g} s (static: the same sizes)"
        )
        makers = {
            "webrtc": lambda n: webrtc_row(server, n, "UDP"),
            "whep": lambda n: webrtc_row(server, n, "WHEP"),
            "mse": lambda n: mse_row(server, n),
            "hls": lambda n: http_row(server, [HlsViewer(server.hls_url) for _ in range(n)], "HLS"),
            "static": lambda n: http_row(
                server, [StaticViewer(server.http_url, shape) for _ in range(n)], "static"
            ),
            "rtmp": lambda n: rtmp_row(server, n),
        }
        for provider in args.providers.split(","):
            rows[provider] = []
            for count in counts:
                row = run(makers[provider](count), timeout=900)
                rows[provider].append(row)
                time.sleep(SETTLE)  # the last ones gone before the next count
            report(provider, rows[provider], base, media_rate)
    finally:
        server.stop()
    table(rows, base, media_rate)


def report(provider: str, rows: list[dict], base: float, media_rate: float) -> None:
    print(provider)
    print(
        f"{'viewers':>8} {'connected':>9} {'join s':>7} {'delivered':>9} {'server CPU':>10} "
        f"{'% core/viewer':>13} {'ns/byte':>8} {'RSS MiB':>8} {'client CPU':>10}"
    )
    for r in rows:
        net = max(0.0, r["cpu"] - base)
        expected = media_rate * r["connected"]
        print(
            f"{r['viewers']:>8} {r['connected']:>9} {r['joined']:>7.1f} "
            f"{(r['bytes'] / expected * 100 if expected else 0):>8.1f}% "
            f"{r['cpu'] * 100:>9.1f}% {net / r['viewers'] * 100:>13.4f} "
            f"{(net * 1e9 / r['bytes'] if r['bytes'] else float('inf')):>8.1f} "
            f"{r['rss'] / 2**20:>8.0f} {r['client'] * 100:>9.1f}%"
        )
    sys.stdout.flush()


def table(rows: dict[str, list[dict]], base: float, media_rate: float) -> None:
    """% of a core per viewer, by provider and count, and its ratio to WebRTC's."""
    counts = sorted({r["viewers"] for found in rows.values() for r in found})
    print("% of a core per viewer (net of the broadcast alone); ratio to WebRTC:")
    print(f"{'provider':>8} " + " ".join(f"{c:>16}" for c in counts))
    webrtc = {r["viewers"]: r for r in rows.get("webrtc", [])}
    for provider, found in rows.items():
        by = {r["viewers"]: r for r in found}
        cells = []
        for count in counts:
            r = by.get(count)
            if r is None:
                cells.append(f"{'-':>16}")
                continue
            share = max(0.0, r["cpu"] - base) / count * 100
            anchor = webrtc.get(count)
            ratio = ""
            if anchor is not None and anchor is not r:
                theirs = max(0.0, anchor["cpu"] - base) / count * 100
                ratio = f" ({share / theirs:.2f}x)" if theirs else ""
            cells.append(f"{share:.4f}{ratio}".rjust(16))
        print(f"{provider:>8} " + " ".join(cells))
    hls = {r["viewers"]: r for r in rows.get("hls", [])}
    static = {r["viewers"]: r for r in rows.get("static", [])}

    def net(r: dict) -> float:
        return max(0.0, r["cpu"] - base)

    ratios = [
        f"{count}: {net(hls[count]) / max(1e-9, net(static[count])):.2f}x"
        for count in counts
        if count in hls and count in static
    ]
    if ratios:
        print("HLS against the same requests of static files: " + ", ".join(ratios))


if __name__ == "__main__":
    main()
