"""RTMP pushes and REST hooks: what they cost the server.

- Push: server CPU with N pushes of one 0.5 Mb/s ``vod-live`` broadcast, each to
  a cheap RTMP sink on asyncio (it answers the commands, then only counts bytes;
  one push goes to a real ffmpeg receiver whose file is decoded), against the
  same broadcast with no push, and against N MSE viewers of it, side by side.
  Reported: % of a core per push, µs per message (video + audio) per push, and
  bytes delivered per push against the real receiver's. The same pushes over
  ``rtmps://`` (to a TLS sink the server trusts through ``rtmp_push_ca_file``)
  give what TLS adds, as a ratio to plain RTMP.
- Hooks: time from ``playStream`` to PENDING for plays one after another, with
  the ``playStream`` hook answered by a backend on loopback and without hooks,
  in the same run: p50/p95 of each, and what the hook adds.

Run with ``scripts/bench.sh bench/rtmp_push.py [--pushes 10,40] [--seconds 20]``.
"""

from __future__ import annotations

import argparse
import asyncio
import ssl
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import av

from testkit.backend import Backend
from testkit.harness import (
    LOAD_LIMITS,
    RawWebSocket,
    ServerProcess,
    require_loopback_only,
)
from testkit.mse_client import MSE_OFFER, watch
from testkit.procfs import tree_times
from testkit.rest_client import call
from testkit.rtc_client import stream_request
from testkit.rtmp_receiver import FfmpegReceiver
from tools.makemedia import make_mp4
from wcs.push import amf0
from wcs.push.rtmp import HANDSHAKE, ChunkReader, message
from wcs.tls import self_signed

TICKS = 100


def cpu_seconds(pid: int) -> float:
    """CPU seconds of the server: the supervisor and its workers."""
    user, system, _rss = tree_times(pid)
    return user + system


class Sink:
    """An RTMP server that accepts any publish and counts what follows."""

    def __init__(self) -> None:
        self.bytes: list[int] = []

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        index = len(self.bytes)
        self.bytes.append(0)
        try:
            c0c1 = await reader.readexactly(1 + HANDSHAKE)
            writer.write(b"\x03" + b"\x00" * HANDSHAKE + c0c1[1:])
            await reader.readexactly(HANDSHAKE)
            chunks, buffer = ChunkReader(), bytearray()
            while True:  # commands, until the publish
                buffer += await reader.read(65536)
                published = False
                for kind, _, _, body in chunks.feed(buffer):
                    if kind != 20:
                        continue
                    name, transaction = amf0.decode(body)[:2]
                    if name == "connect":
                        answer = amf0.encode("_result", transaction, None, {})
                    elif name == "createStream":
                        answer = amf0.encode("_result", transaction, None, 1.0)
                    elif name == "publish":
                        answer = amf0.encode(
                            "onStatus", 0.0, None, {"code": "NetStream.Publish.Start"}
                        )
                        published = True
                    else:
                        continue
                    writer.write(b"".join(message(3, 20, 0, answer, chunk_size=128)))
                if published:
                    break
            while True:
                data = await reader.read(1 << 18)
                if not data:
                    break
                self.bytes[index] += len(data)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


async def pushes_window(
    server: ServerProcess, pushes: int, seconds: float, sink_port: int, scheme: str = "rtmp"
) -> float:
    """Server CPU seconds over ``seconds`` with ``pushes`` pushes running."""
    ids = []
    for index in range(pushes):
        status, push, _ = await asyncio.to_thread(
            call,
            server.http_url,
            "/rest-api/push/startup",
            {"streamName": "show", "rtmpUrl": f"{scheme}://127.0.0.1:{sink_port}/app{index}"},
        )
        assert status == 200, push
        ids.append(push["mediaSessionId"])
    await asyncio.sleep(3)  # connected, publishing
    assert server.process is not None
    before = cpu_seconds(server.process.pid)
    await asyncio.sleep(seconds)
    used = cpu_seconds(server.process.pid) - before
    for media_id in ids:
        await asyncio.to_thread(
            call, server.http_url, "/rest-api/push/terminate", {"mediaSessionId": media_id}
        )
    await asyncio.sleep(1)
    return used


async def mse_window(server: ServerProcess, viewers: int, seconds: float) -> float:
    assert server.process is not None
    watching = [
        asyncio.ensure_future(watch(server.ws_url, "show", seconds + 4)) for _ in range(viewers)
    ]
    await asyncio.sleep(3)
    before = cpu_seconds(server.process.pid)
    await asyncio.sleep(seconds)
    used = cpu_seconds(server.process.pid) - before
    await asyncio.gather(*watching, return_exceptions=True)
    return used


def bench_pushes(folder: Path, counts: list[int], seconds: float) -> None:
    media = folder / "media"
    media.mkdir()
    make_mp4(media / "half.mp4", seconds=30, bitrate="500k", fps=30, gop=60)
    with av.open(str(media / "half.mp4")) as container:
        video = container.streams.video[0].frames
        audio = container.streams.audio[0].frames
        duration = float(container.duration) / 1e6
    rate = (video + audio) / duration  # messages a second per push
    (folder / "server").mkdir()
    cert, key = self_signed(folder / "tls")  # the TLS sink's, which the server trusts
    server = ServerProcess(
        folder / "server",
        {
            "media_dir": str(media),
            "vod_live_loop": "true",
            "max_pushes": "1000",
            **LOAD_LIMITS,
            "rtmp_push_ca_file": str(cert),
        },
    )
    server.start()
    receiver = FfmpegReceiver(folder / "sample.flv", app="check", key="rtmp_show", wait=30).start()
    try:
        call(
            server.http_url,
            "/rest-api/vod/startup",
            {"uri": "vod-live://half.mp4", "localStreamName": "show"},
        )

        async def run() -> None:
            sink = Sink()
            listener = await asyncio.start_server(sink.serve, "127.0.0.1", 0)
            port = listener.sockets[0].getsockname()[1]
            tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            tls.load_cert_chain(cert, key)
            tls_sink = Sink()
            tls_listener = await asyncio.start_server(tls_sink.serve, "127.0.0.1", 0, ssl=tls)
            tls_port = tls_listener.sockets[0].getsockname()[1]
            status, sample, _ = await asyncio.to_thread(
                call,
                server.http_url,
                "/rest-api/push/startup",
                {"streamName": "show", "rtmpUrl": receiver.url},
            )
            assert status == 200, sample
            base = await pushes_window(server, 0, seconds, port)
            print(f"broadcast alone (and one checked push): {base / seconds * 100:.1f}% of a core")
            for count in counts:
                with_pushes = await pushes_window(server, count, seconds, port)
                extra = (with_pushes - base) / seconds
                per_push = extra / count
                print(
                    f"{count:4d} pushes: {with_pushes / seconds * 100:5.1f}% of a core; "
                    f"per push {per_push * 100:.3f}% of a core, "
                    f"{per_push / rate * 1e6:.1f} µs per message ({rate:.0f} messages/s)"
                )
                secure = await pushes_window(server, count, seconds, tls_port, "rtmps")
                tls_per = (secure - base) / seconds / count
                print(
                    f"{count:4d} rtmps pushes: per push {tls_per * 100:.3f}% of a core, "
                    f"{tls_per / rate * 1e6:.1f} µs per message; rtmps / rtmp push = "
                    f"{tls_per / per_push if per_push else float('nan'):.2f}"
                )
                mse = await mse_window(server, count, seconds)
                mse_per = (mse - base) / seconds / count
                print(
                    f"{count:4d} MSE viewers: per viewer {mse_per * 100:.3f}% of a core; "
                    f"push / MSE viewer = {per_push / mse_per if mse_per else float('nan'):.2f}"
                )
            for label, sizes in (("rtmp", sink.bytes), ("rtmps", tls_sink.bytes)):
                print(
                    f"{label} sink bytes per push: min {min(sizes)}, median "
                    f"{statistics.median(sizes):.0f}, max {max(sizes)} "
                    f"({len(sizes)} connections)"
                )
            await asyncio.to_thread(
                call,
                server.http_url,
                "/rest-api/push/terminate",
                {"mediaSessionId": sample["mediaSessionId"]},
            )
            listener.close()
            tls_listener.close()

        asyncio.run(run())
        receiver.finished(30)
        frames = 0
        with av.open(str(folder / "sample.flv")) as container:
            for _frame in container.decode(container.streams.video[0]):
                frames += 1
        size = (folder / "sample.flv").stat().st_size
        print(f"checked push: {frames} frames decoded, {size} bytes received by ffmpeg")
    finally:
        receiver.kill()
        server.stop()


def pending_times(server: ServerProcess, plays: int) -> list[float]:
    client = RawWebSocket(server.ws_url + "/")
    client.send_json("connection", {"appKey": "defaultApp"})
    assert client.receive_json()["message"] == "getUserData"
    times = []
    for _ in range(plays):
        request = stream_request("vod-live://half.mp4", provider="MSE", sdp=MSE_OFFER)
        started = time.perf_counter()
        client.send_json("playStream", request)
        while True:
            message = client.receive_json()
            if message["message"] == "notifyStreamStatusEvent":
                break
        times.append((time.perf_counter() - started) * 1000)
        assert message["data"][0]["status"] == "PENDING", message
        client.send_json("stopStream", {"mediaSessionId": request["mediaSessionId"]})
        while client.receive_json()["message"] != "notifyStreamStatusEvent":
            pass
    client.close()
    return times


def bench_hooks(folder: Path, plays: int) -> None:
    media = folder / "media"
    backend = Backend().start()
    results = {}
    try:
        for label, extra in (("no hooks", {}), ("hooks", {"rest_hook_url": backend.url})):
            workdir = folder / label.replace(" ", "-")
            workdir.mkdir()
            server = ServerProcess(workdir, {"media_dir": str(media), **LOAD_LIMITS, **extra})
            server.start()
            try:
                pending_times(server, 10)  # warm
                results[label] = pending_times(server, plays)
            finally:
                server.stop()
    finally:
        backend.stop()
    for label, times in results.items():
        times.sort()
        print(
            f"{label:9s}: playStream → PENDING p50 {statistics.median(times):.2f} ms, "
            f"p95 {times[int(len(times) * 0.95)]:.2f} ms ({len(times)} plays)"
        )
    added = [
        statistics.median(results["hooks"]) - statistics.median(results["no hooks"]),
        results["hooks"][int(plays * 0.95)] - results["no hooks"][int(plays * 0.95)],
    ]
    ratio = statistics.median(results["hooks"]) / statistics.median(results["no hooks"])
    print(f"a hook adds p50 {added[0]:.2f} ms, p95 {added[1]:.2f} ms (ratio p50 {ratio:.2f})")
    print(f"backend saw {len(backend.bodies('playStream'))} playStream calls")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pushes", default="10,40")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--plays", type=int, default=300)
    args = parser.parse_args()
    require_loopback_only()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        bench_pushes(folder, [int(n) for n in args.pushes.split(",")], args.seconds)
        bench_hooks(folder, args.plays)


if __name__ == "__main__":
    main()
