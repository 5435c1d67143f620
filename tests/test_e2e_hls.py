"""HLS on its own port, as WCS serves it: checked without a browser (the playlist
parsed, every segment decoded with PyAV), attacked, and played by the SDK's
hls-js-player demo (hls.js) in Chromium."""

from __future__ import annotations

import asyncio
import datetime
import io
import re
import socket
import time
import urllib.error
import urllib.parse
import urllib.request

import av

from testkit.pages import open_hls_js
from testkit.rest_client import call
from testkit.rtc_client import run
from testkit.rtc_publisher import Published, publish
from tests.test_e2e_metrics import read as metrics
from tests.test_e2e_metrics import value



def url(server, name: str, file: str | None = None) -> str:
    quoted = urllib.parse.quote(name, safe="")
    return f"{server.hls_url}/{quoted}/{file or quoted + '.m3u8'}"


def get(address: str, method: str = "GET", timeout: float = 20) -> tuple[int, bytes, dict]:
    request = urllib.request.Request(address, method=method)
    request.add_header("Origin", "http://page.example")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read(), dict(response.headers)
    except urllib.error.HTTPError as failure:
        return failure.code, failure.read(), dict(failure.headers)


def parse(playlist: str) -> dict:
    """The tags and segments of a media playlist, checked against RFC 8216's rules."""
    lines = [line for line in playlist.splitlines() if line]
    assert lines[0] == "#EXTM3U"
    tags: dict = {"segments": [], "endlist": False}
    duration = None
    for line in lines[1:]:
        if line.startswith("#EXT-X-TARGETDURATION:"):
            tags["target"] = int(line.split(":")[1])
        elif line.startswith("#EXT-X-MEDIA-SEQUENCE:"):
            tags["sequence"] = int(line.split(":")[1])
        elif line.startswith("#EXT-X-VERSION:"):
            tags["version"] = int(line.split(":")[1])
        elif line.startswith("#EXTINF:"):
            duration = float(line[8:].split(",")[0])
        elif line == "#EXT-X-ENDLIST":
            tags["endlist"] = True
        elif not line.startswith("#"):
            assert duration is not None, "a URI without #EXTINF"
            tags["segments"].append((line, duration))
            duration = None
    assert {"target", "sequence", "version"} <= set(tags)
    for _, length in tags["segments"]:
        assert round(length) <= tags["target"]  # RFC 8216 4.3.3.1
    return tags


def check_segment(data: bytes) -> dict:
    """Decode a segment on its own: starts with an IDR, audio and video agree."""
    packets: dict = {"video": [], "audio": []}
    with av.open(io.BytesIO(data), format="mpegts") as container:
        for packet in container.demux():
            if packet.size:
                packets[packet.stream.type].append(packet)
    first = bytes(packets["video"][0])
    types = [unit[0] & 0x1F for unit in first.split(b"\x00\x00\x01")[1:] if unit]
    assert 5 in types, types  # an IDR
    with av.open(io.BytesIO(data), format="mpegts") as container:
        frames = list(container.decode(video=0))
    assert len(frames) == len(packets["video"])
    video = [float(p.pts * p.time_base) for p in packets["video"]]
    audio = [float(p.pts * p.time_base) for p in packets["audio"]]
    return {"video": video, "audio": audio, "width": frames[0].width}


def test_a_broadcast_as_hls_checked_without_a_browser(start_server, media):
    server = start_server(media_dir=str(media), vod_live_loop="true")
    name = "vod-live://live.mp4"
    started = time.monotonic()
    status, body, headers = get(url(server, name))
    first_playlist = time.monotonic() - started
    assert status == 200, body
    assert headers["Content-Type"] == "application/vnd.apple.mpegurl"
    assert headers["Access-Control-Allow-Origin"] == "*"
    first = parse(body.decode())
    assert first["segments"] and not first["endlist"]
    assert first_playlist < 4.0, first_playlist  # a GOP at most (2 s here)
    time.sleep(4.5)
    later = parse(get(url(server, name))[1].decode())
    assert later["sequence"] + len(later["segments"]) >= \
        first["sequence"] + len(first["segments"]) + 2  # it moves on
    previous_end = None
    for uri, duration in later["segments"]:
        status, data, headers = get(url(server, name, uri))
        assert status == 200 and headers["Content-Type"] == "video/mp2t"
        found = check_segment(data)
        assert found["width"] == 640
        assert abs((found["video"][-1] - found["video"][0]) -
                   (found["audio"][-1] - found["audio"][0])) < 0.1
        assert abs(found["video"][-1] + 1 / 30 - found["video"][0] - duration) < 0.05
        if previous_end is not None:
            assert abs(found["video"][0] - previous_end) < 0.002  # continuous
        previous_end = found["video"][-1] + 1 / 30
    print(f"first playlist after {first_playlist * 1000:.0f} ms")
    # one HLS player, as /metrics and the stream's listing count it
    found = metrics(server)
    assert value(found, "wcsvod_viewers", provider="HLS") == 1
    assert value(found, "wcsvod_sent_packets_total", provider="HLS") == len(later["segments"])
    time.sleep(1.2)  # the next report of HLS players
    status, streams, _ = call(server.http_url, "/rest-api/vod/find_all", {})
    assert status == 200 and [s["hlsViewers"] for s in streams] == [1], streams


def test_a_rest_started_stream_over_https(start_server, media):
    """HLS on hls.ssl.port (WCS's 8445) with the server's certificate, of a stream
    started by REST under a name of its own."""
    import ssl

    from testkit.rest_client import call

    server = start_server(media_dir=str(media), vod_live_loop="true")
    assert call(server.http_url, "/rest-api/vod/startup",
                {"uri": "vod-live://live.mp4", "localStreamName": "show"})[0] == 200
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    base = f"https://127.0.0.1:{server.ports['hls.ssl.port']}"
    with urllib.request.urlopen(f"{base}/show/show.m3u8", timeout=20,
                                context=context) as response:
        tags = parse(response.read().decode())
    uri = tags["segments"][-1][0]
    with urllib.request.urlopen(f"{base}/show/{uri}", timeout=20, context=context) as response:
        check_segment(response.read())


def test_refusals_are_clear(start_server, media):
    server = start_server(media_dir=str(media))
    expected = [
        (url(server, "vod://not-an-mp4.mp4"), 400, "File has wrong format"),  # (VOD)
        (url(server, "nothing"), 404, "Stream not found"),
        (url(server, "vod-live://absent.mp4"), 404, "File not found"),
        (url(server, "vod-live://../etc/passwd"), 400, "'..' is not allowed"),
        (url(server, "vod-live://not-an-mp4.mp4"), 400, "File has wrong format"),
        (url(server, "vod-live://live.mp4", "other.m3u8"), 404, "no such HLS file"),
        (url(server, "vod-live://live.mp4", "99999.ts"), 404, "segment 99999 is not"),
        (server.hls_url + "/", 404, "HLS is at /<streamName>/<streamName>.m3u8"),
        (server.hls_url + "/%FF/%FF.m3u8", 404, "UTF-8"),
    ]
    for address, status, message in expected:
        got, body, headers = get(address)
        assert got == status and message in body.decode(), (address, got, body)
        assert headers["Access-Control-Allow-Origin"] == "*"
    assert get(url(server, "vod-live://live.mp4"), method="POST")[0] == 405
    status, _, headers = get(url(server, "vod-live://live.mp4"), method="OPTIONS")
    assert status == 204 and "GET" in headers["Access-Control-Allow-Methods"]
    assert "Traceback" not in server.log()


def test_an_ended_stream_gets_endlist_and_an_unused_one_is_released(start_server, media):
    server = start_server(media_dir=str(media), hls_idle_timeout="3000",
                          vod_stream_timeout="1000")
    name = "vod-live://loop.mp4"  # 3 s, not looping
    assert get(url(server, name))[0] == 200
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        tags = parse(get(url(server, name))[1].decode())
        if tags["endlist"]:
            break
        time.sleep(0.5)
    assert tags["endlist"] and sum(d for _, d in tags["segments"]) > 2.9
    for uri, _ in tags["segments"]:
        check_segment(get(url(server, name, uri))[1])
    time.sleep(4.5)  # no request for longer than hls_idle_timeout
    assert server.saw("HLS of 'vod-live://loop.mp4' stopped")
    # asked again, it starts again: a new broadcast of the file
    again = parse(get(url(server, name))[1].decode())
    assert again["sequence"] == 0


def test_a_publication_as_hls(start_server, media):
    server = start_server(media_dir=str(media))

    async def scenario():
        publisher_started = Published()
        publisher = asyncio.ensure_future(publish(server.ws_url, "cam", media / "main.mp4",
                                                  seconds=8, record=False,
                                            result=publisher_started))
        await publisher_started.publishing()
        status, body, _ = await asyncio.to_thread(get, url(server, "cam"))
        await asyncio.sleep(3.0)
        later = (await asyncio.to_thread(get, url(server, "cam")))[1].decode()
        segments = [await asyncio.to_thread(get, url(server, "cam", uri))
                    for uri, _ in parse(later)["segments"]]
        await publisher
        await asyncio.sleep(0.5)
        ended = (await asyncio.to_thread(get, url(server, "cam")))[1].decode()
        return status, body, segments, ended

    status, body, segments, ended = run(scenario())
    assert status == 200, body
    assert len(segments) >= 2
    for got, data, _ in segments:
        assert got == 200
        found = check_segment(data)
        assert found["audio"], "the published stream's AAC is in the segments"
    assert parse(ended)["endlist"]


def rss_mib(server) -> float:
    for line in open(f"/proc/{server.process.pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def test_attacks_leave_others_served(start_server, media):
    """Many names at once, clients that never read their segments: bounded, and a
    player of another stream is still served."""
    server = start_server(media_dir=str(media), vod_live_loop="true")
    name = "vod-live://live.mp4"
    assert get(url(server, name))[0] == 200
    segment = parse(get(url(server, name))[1].decode())["segments"][-1][0]
    before = rss_mib(server)
    stuck = []
    for _ in range(150):  # ask for a segment, read nothing, keep the connection
        sock = socket.create_connection(("127.0.0.1", server.ports["hls.port"]))
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        path = urllib.parse.urlsplit(url(server, name, segment)).path
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode() * 5)
        stuck.append(sock)
    unknown = [get(url(server, f"nobody-{n}"))[0] for n in range(50)]
    assert set(unknown) == {404}
    # LL-HLS waits, each left at once: no traceback, nothing held, others served
    playlist = get(url(server, name))[1].decode()
    number = int(HINT.search(playlist)[1])
    path = urllib.parse.urlsplit(url(server, name)).path + f"?_HLS_msn={number + 1}"
    for _ in range(100):
        sock = socket.create_connection(("127.0.0.1", server.ports["hls.port"]))
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        sock.close()
    started = time.monotonic()
    status, body, _ = get(url(server, name))
    assert status == 200 and time.monotonic() - started < 2.0
    grown = rss_mib(server) - before
    for sock in stuck:
        sock.close()
    assert grown < 40, grown  # 750 requests of one shared segment: not 750 copies
    assert "Traceback" not in server.log()


HINT = re.compile(r'#EXT-X-PRELOAD-HINT:TYPE=PART,URI="(\d+)\.(\d+)\.ts"')
PART = re.compile(r'#EXT-X-PART:DURATION=([\d.]+),URI="(\d+)\.(\d+)\.ts"(,INDEPENDENT=YES)?')


def test_low_latency_players_wait_for_the_next_part(start_server, media):
    server = start_server(media_dir=str(media), vod_live_loop="true")
    name = "vod-live://live.mp4"
    playlist = get(url(server, name))[1].decode()
    assert "#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK=1.500" in playlist
    assert "#EXT-X-PART-INF:PART-TARGET=0.500" in playlist
    tags = parse(playlist)
    parts = PART.findall(playlist)
    assert parts and all(float(duration) <= 0.501 for duration, *_ in parts)
    for duration, number, index, independent in parts:  # each stands alone
        status, data, headers = get(url(server, name, f"{number}.{index}.ts"))
        assert status == 200 and headers["Access-Control-Allow-Origin"] == "*"
        if independent:
            check_segment(data)  # begins with an IDR
        else:
            with av.open(io.BytesIO(data), format="mpegts") as container:
                assert any(packet.size for packet in container.demux(video=0))
    # each segment says when it was live: now, and as far apart as the segments are long
    walls = [datetime.datetime.fromisoformat(line[25:].replace("Z", "+00:00")).timestamp()
             for line in playlist.splitlines() if line.startswith("#EXT-X-PROGRAM-DATE-TIME:")]
    # (and the segment being filled, once it has a part)
    assert 0 <= len(walls) - len(tags["segments"]) <= 1 and abs(walls[-1] - time.time()) < 3
    for (_, length), wall, following in zip(tags["segments"], walls, walls[1:]):
        assert abs(following - wall - length) < 0.05, (walls, tags["segments"])
    # parts of a segment add up to it
    last_whole = tags["segments"][-1]
    own = [float(duration) for duration, number, _, _ in parts
           if f"{number}.ts" == last_whole[0]]
    assert abs(sum(own) - last_whole[1]) < 0.005, (own, last_whole)

    # a blocking reload: answered once the playlist holds the part it asks for
    number, index = map(int, HINT.search(playlist).groups())
    started = time.monotonic()
    status, body, _ = get(url(server, name) + f"?_HLS_msn={number}&_HLS_part={index}")
    waited = time.monotonic() - started
    update = body.decode()
    assert status == 200 and waited < 2.0, waited
    assert f'URI="{number}.{index}.ts"' in update or f"\n{number}.ts\n" in update
    # the hinted part, asked for before it exists, comes as soon as it is made
    number, index = map(int, HINT.search(update).groups())
    started = time.monotonic()
    status, data, _ = get(url(server, name, f"{number}.{index}.ts"))
    waited = time.monotonic() - started
    assert status in (200, 404) and waited < 2.0  # (404: the segment ended before it)
    if status == 200:
        with av.open(io.BytesIO(data), format="mpegts") as container:
            assert any(packet.size for packet in container.demux())

    refusals = [
        ("?_HLS_part=1", 400, "_HLS_part needs _HLS_msn"),
        ("?_HLS_msn=abc", 400, "_HLS_msn must be one whole number"),
        ("?_HLS_msn=1&_HLS_msn=2", 400, "_HLS_msn must be one whole number"),
        ("?_HLS_msn=5&_HLS_part=-1", 400, "_HLS_part must be one whole number"),
        ("?_HLS_msn=99999", 400, "more than two segments past"),
    ]
    for query, code, message in refusals:
        status, body, _ = get(url(server, name) + query)
        assert status == code and message in body.decode(), (query, status, body)
    assert get(url(server, name, "0.9999.ts"))[0] == 404
    assert get(url(server, name, "1.2.3.ts"))[0] == 404
    assert "Traceback" not in server.log()


def test_the_sdk_hls_js_demo_plays_a_broadcast_and_a_publication(start_server, media, page):
    server = start_server(media_dir=str(media), vod_live_loop="true")

    def play(name: str, low_latency: bool = False, settle: float = 1.5) -> dict:
        state = open_hls_js(page, server, name, "?llhls=true" if low_latency else "")
        page.evaluate("""() => { window.__parts = 0; hlsPlayer.on(Hls.Events.FRAG_LOADED,
            (event, data) => { if (data.part) window.__parts += 1; }); }""")
        time.sleep(settle)
        later = page.evaluate("() => document.getElementById('remoteVideo').currentTime")
        # hls.js's own figures: how far behind the live edge it plays (s), parts loaded
        latency, parts = page.evaluate("() => [hlsPlayer.latency, window.__parts]")
        return {**state, "later": later, "latency": latency, "parts": parts}

    broadcast = play("vod-live://live.mp4")
    assert broadcast["width"] == 640 and broadcast["later"] > broadcast["time"]
    # the demo's "Low latency HLS" box: hls.js follows the parts, near the live edge
    low = play("vod-live://live.mp4", low_latency=True, settle=4.0)
    print(f"hls.js latency: {broadcast['latency']:.2f} s, low-latency mode "
          f"{low['latency']:.2f} s")
    assert low["width"] == 640 and low["later"] > low["time"]
    assert low["parts"] >= 4 and broadcast["parts"] == 0, (low, broadcast)
    assert low["latency"] < 3.0, low  # (1.5 s here; whole segments: about three, ~6 s)

    async def publishing():
        return await publish(server.ws_url, "cam", media / "main.mp4", seconds=25,
                             record=False)

    import threading

    result = {}
    thread = threading.Thread(target=lambda: result.update(done=run(publishing())))
    thread.start()
    time.sleep(2)
    published = play("cam")
    assert published["width"] > 0 and published["later"] > published["time"]
    thread.join(40)


def test_with_two_workers_one_cuts_each_stream(start_server, media):
    """Every HLS request reaches worker 1, so a player's playlist and segments
    always agree; what it cuts may be played on any worker (here, a broadcast
    the other worker's viewers share)."""
    server = start_server(media_dir=str(media), workers="2", vod_live_loop="true",
                          access_log="true")  # the log says which worker answered
    name = "vod-live://live.mp4"
    tags = [parse(get(url(server, name))[1].decode()) for _ in range(3)]
    time.sleep(2.5)
    later = parse(get(url(server, name))[1].decode())
    for uri, _ in later["segments"]:
        status, data, _ = get(url(server, name, uri))
        assert status == 200
        check_segment(data)
    assert all(tag["segments"] for tag in tags)
    served = {line.split("[worker ")[1].split("]")[0]
              for line in server.log().splitlines()
              if "m3u8 HTTP/1.1" in line and "[worker " in line}
    assert served == {"1"}, served
