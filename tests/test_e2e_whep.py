"""WHEP playback and WHIP ingest over plain HTTP (RFC 9725), with aiortc clients
against the server on its defaults (two workers): every kind of stream plays,
a WHIP publication is a stream like any other, the access rules and caps are
the WebSocket's, every refusal says why, and any worker serves a session's URL.
(Chromium and the npm ``whip-whep`` clients: test_e2e_whep_browser.py.)"""

from __future__ import annotations

import asyncio
import time
from urllib.parse import unquote

import pytest

from testkit.backend import Backend
from tests.conftest import SERVERS
from testkit.harness import WEBSDK, ServerProcess, require_loopback_only, run
from testkit.rest_client import call
from testkit.rtc_client import play
from tests.test_e2e_metrics import read, value
from testkit.whep_client import Viewed, endpoint, http, whep_play, whip_publish
from testkit.workers import paused, wait_for_workers
from wcs.access.tokens import sign

FIND_ALL = "/rest-api/stream/find_all"
SDP = {"Content-Type": "application/sdp"}
SECRET = "a-play-token-secret-of-some-length"


async def metrics_once(server, ready, seconds: float = 15.0) -> dict:
    """The server's /metrics samples once ``ready()``."""
    deadline = time.monotonic() + seconds
    while not ready() and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    await asyncio.sleep(0.5)
    return await asyncio.to_thread(read, server)


@pytest.fixture(scope="module")
def shared_server(media, tmp_path_factory):
    """One server (the defaults: two workers) for the tests that need nothing
    else set; each leaves it as it found it, nothing playing."""
    require_loopback_only()
    server = ServerProcess(tmp_path_factory.mktemp("whep-server"),
                           {"media_dir": str(media), "websdk_dir": str(WEBSDK)}).start()
    yield server
    server.stop()


@pytest.fixture
def server(shared_server, request):
    """The shared server, its log shown if the test fails."""
    request.node.stash[SERVERS] = [shared_server]
    assert not listed(shared_server.http_url), "an earlier test left something playing"
    return shared_server


def listed(base: str) -> list[dict]:
    status, items, _ = call(base, FIND_ALL)
    return items if status == 200 else []


def listed_until(base: str, wanted, seconds: float = 10.0) -> list[dict]:
    deadline = time.monotonic() + seconds
    items = listed(base)
    while not wanted(items) and time.monotonic() < deadline:
        time.sleep(0.2)
        items = listed(base)
    return items


def test_whep_plays_every_kind_of_stream_trickled_or_not(server, media):
    base = server.http_url
    started = call(base, "/rest-api/vod/startup",
                   {"uri": "vod-live://loop.mp4", "localStreamName": "show", "loop": True})
    assert started[0] == 200, started
    for name, trickle in (("vod://main.mp4", False), ("vod-live://live.mp4", True),
                          ("vod://baseline.mp4", True), ("show", False)):
        viewed = run(whep_play(base, name, seconds=2.0, trickle=trickle), timeout=60)
        created = viewed.created
        assert created is not None and created.status == 201, (name, created and created.text)
        assert created.headers["content-type"] == "application/sdp"
        assert created.headers["location"].startswith("/whep/")
        assert created.headers["etag"].startswith('"')
        assert created.headers["access-control-allow-origin"] == "*"
        assert "Location" in created.headers["access-control-expose-headers"]
        assert "a=candidate:" in created.text  # no trickle from the server: all in the answer
        assert "connected" in viewed.state, (name, viewed.state)
        sizes = {(w, h) for _, w, h in viewed.frames}
        assert len(viewed.frames) >= 30 and sizes and all(w > 0 for w, _ in sizes), name
        assert viewed.audio_frames >= 50, (name, viewed.audio_frames)
        assert viewed.deleted is not None and viewed.deleted.status == 200
        # the DELETE ended it: gone from the listing, its URL no more
        assert not [i for i in listed_until(base, lambda items: not items)
                    if i["mediaProvider"] == "WHEP"]
        again = http("DELETE", viewed.location)
        assert again.status == 404 and "no such WHEP/WHIP session" in again.text
    assert call(base, "/rest-api/vod/terminate", {"localStreamName": "show"})[0] == 200


def test_a_whip_publication_is_a_stream_like_any_other(server, media):
    base = server.http_url

    async def scenario():
        connected = asyncio.Event()
        publishing = asyncio.ensure_future(
            whip_publish(base, "whip-cam", media / "main.mp4", seconds=12, connected=connected))
        await asyncio.wait_for(connected.wait(), 20)
        await asyncio.sleep(1.0)
        items = await asyncio.to_thread(
            listed_until, base,
            lambda items: any(i["mediaProvider"] == "WHIP" and i["status"] == "PUBLISHING"
                              for i in items))
        whip = [i for i in items if i["mediaProvider"] == "WHIP"]
        assert whip and whip[0]["name"] == "whip-cam" and whip[0]["published"], items
        # the same name cannot be published twice, whichever door asks
        taken = await asyncio.to_thread(
            http, "POST", endpoint(base, "whip", "whip-cam"),
            (await offer_of("video")).encode(), SDP)
        assert taken.status == 409, taken.text
        # an SDK-protocol viewer and a WHEP viewer play it at once, seen in /metrics
        watching = Viewed()
        sdk, whep, seen = await asyncio.gather(
            play(server.ws_url, "whip-cam", stop_after=4.0),
            whep_play(base, "whip-cam", seconds=3.0, audio=False, result=watching),
            metrics_once(server, lambda: len(watching.frames) > 10))
        assert "PLAYING" in sdk.statuses and len(sdk.video) >= 20, sdk.statuses
        assert whep.created.status == 201 and len(whep.frames) >= 20
        assert value(seen, "wcsvod_viewers", provider="WHEP") == 1, seen
        assert value(seen, "wcsvod_viewers", provider="WebRTC") == 1
        assert value(seen, "wcsvod_sessions") == 3  # the WHIP, the WHEP and the SDK's
        published = await publishing
        assert published.deleted is not None and published.deleted.status == 200
        # the DELETE unpublished it: the name is free again
        gone = await asyncio.to_thread(
            listed_until, base, lambda items: not [i for i in items if i["name"] == "whip-cam"])
        assert not [i for i in gone if i["name"] == "whip-cam"]

    run(scenario(), timeout=120)


async def offer_of(*kinds: str) -> str:
    """An aiortc offer (with candidates) that receives ``kinds``, or sends video."""
    from aiortc import RTCPeerConnection

    from wcs.webrtc.viewer import EncodedTrack

    pc = RTCPeerConnection()
    for kind in kinds:
        if kind == "video":
            pc.addTrack(EncodedTrack("video"))
        else:
            pc.addTransceiver(kind, direction="recvonly")
    await pc.setLocalDescription(await pc.createOffer())
    sdp = pc.localDescription.sdp
    await pc.close()
    return sdp


def test_the_bearer_token_is_the_play_token_and_hooks_hear_the_method(start_server, media):
    backend = Backend().start()
    try:
        server = start_server(media_dir=str(media), play_token_secret=SECRET,
                              rest_hook_url=backend.url, turn_secret="a-turn-secret",
                              turn_url="turn:127.0.0.1:3478?transport=udp,"
                                       "turn:127.0.0.1:3478?transport=tcp")
        base = server.http_url
        offer = run(offer_of("audio", "video")).encode()
        url = endpoint(base, "whep", "vod://main.mp4")
        none = http("POST", url, offer, SDP)
        assert none.status == 401 and "no token" in none.text, none.text
        wrong = sign(SECRET, "vod://baseline.mp4", int(time.time()) + 60)
        refused = http("POST", url, offer, {**SDP, "Authorization": f"Bearer {wrong}"})
        assert refused.status == 403 and "does not match" in refused.text, refused.text
        good = sign(SECRET, "vod://main.mp4", int(time.time()) + 60)
        viewed = run(whep_play(base, "vod://main.mp4", seconds=1.0, token=good), timeout=60)
        assert viewed.created.status == 201 and len(viewed.frames) > 10
        # with TURN set, an answer names it (RFC 9725 4.6), with a credential made for it
        links = ", ".join(viewed.created.links).split(", <")
        assert len(links) == 2 and all('rel="ice-server"' in link for link in links), links
        assert "turn:127.0.0.1:3478?transport=tcp>" in links[1]
        assert 'credential-type="password"' in links[0] and 'username="' in links[0]
        connect = backend.wait_for("connect")[-1]
        assert connect["method"] == "whep" and connect["clientAddress"] == "127.0.0.1"
        playing = backend.wait_for("playStream")[-1]
        assert playing["method"] == "whep" and playing["name"] == "vod://main.mp4"
        assert playing["custom"] == {"token": good}
        stopped = backend.wait_for("stopStream")[-1]
        assert stopped["method"] == "whep" and stopped["status"] == "STOPPED"
        # a session opened with a token is ended only with it
        held = http("POST", url, offer, {**SDP, "Authorization": f"Bearer {good}"})
        assert held.status == 201, held.text
        session = base + held.headers["location"]
        for token in ("", wrong):
            refused = http("DELETE", session, b"", {"Authorization": f"Bearer {token}"})
            assert refused.status == 403 and "bearer token it was opened with" in refused.text
        assert http("DELETE", session, b"", {"Authorization": f"Bearer {good}"}).status == 200
    finally:
        backend.stop()


def test_a_refused_backend_is_403_and_caps_are_429(start_server, media):
    backend = Backend(lambda method, body: (403, None, 0.0) if body.get("method") == "whip"
                      else (200, None, 0.0)).start()
    try:
        server = start_server(media_dir=str(media), rest_hook_url=backend.url,
                              max_sessions_per_address="2")
        base = server.http_url
        offer = run(offer_of("video")).encode()
        refused = http("POST", endpoint(base, "whip", "mine"), offer, SDP)
        assert refused.status == 403 and "Restricted access" in refused.text, refused.text
        # two sessions from this address fill the cap: the third is 429, naming it
        holders = [http("POST", endpoint(base, "whep", "vod-live://live.mp4"),
                        run(offer_of("audio", "video")).encode(), SDP) for _ in range(2)]
        assert [h.status for h in holders] == [201, 201], [h.text for h in holders]
        third = http("POST", endpoint(base, "whep", "vod-live://live.mp4"),
                     run(offer_of("audio", "video")).encode(), SDP)
        assert third.status == 429 and "max_sessions_per_address=2" in third.text, third.text
        for holder in holders:
            assert http("DELETE", base + holder.headers["location"]).status == 200
        # given back at once: one more may come
        fourth = http("POST", endpoint(base, "whep", "vod-live://live.mp4"),
                      run(offer_of("audio", "video")).encode(), SDP)
        assert fourth.status == 201, fourth.text
        http("DELETE", base + fourth.headers["location"])
    finally:
        backend.stop()


def test_refusals_name_the_problem(server, media):
    base = server.http_url
    offer = run(offer_of("audio", "video")).encode()
    cases = {
        "unknown file": (endpoint(base, "whep", "vod://nope.mp4"), offer, SDP, 404,
                         "File not found"),
        "outside the folder": (endpoint(base, "whep", "vod://../etc/passwd"), offer, SDP, 400,
                               "Invalid stream name"),
        "no name": (f"{base}/whep/", offer, SDP, 400, "the name is missing"),
        "wrong type": (endpoint(base, "whep", "vod://main.mp4"), offer,
                       {"Content-Type": "application/json"}, 415, "application/sdp"),
        "not sdp": (endpoint(base, "whep", "vod://main.mp4"), b"hello", SDP, 400, "v=0"),
        "no media": (endpoint(base, "whep", "vod://main.mp4"),
                     b"v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n", SDP, 400,
                     "no audio or video"),
        "not webrtc": (endpoint(base, "whep", "vod://main.mp4"),
                       b"v=0\r\nm=video 9 RTP/AVP 96\r\n", SDP, 400, "not WebRTC"),
        "no shared codec": (endpoint(base, "whep", "vod://main.mp4"),
                            run(offer_of("audio")).replace("opus", "speex").encode(), SDP,
                            400, "Opus"),
        "binary": (endpoint(base, "whep", "vod://main.mp4"), bytes(range(256)) * 8, SDP, 400,
                   "UTF-8"),
        "huge": (endpoint(base, "whep", "vod://main.mp4"), b"v=0\r\n" + b"a=x\r\n" * 20000,
                 SDP, 413, "limited"),
    }
    for case, (url, body, headers, status, says) in cases.items():
        answer = http("POST", url, body, headers)
        assert answer.status == status and says in answer.text, (case, answer.status, answer.text)
        assert answer.headers["content-type"].startswith("application/json"), case
    # the endpoint takes POST and OPTIONS only; a session's URL PATCH, DELETE, OPTIONS
    assert http("GET", endpoint(base, "whep", "vod://main.mp4")).status == 405
    options = http("OPTIONS", endpoint(base, "whip", "x"))
    assert options.status == 204 and "POST" in options.headers["access-control-allow-methods"]
    assert options.headers["accept-post"] == "application/sdp"
    assert http("GET", f"{base}/whep/x/nothing.1").status == 405
    # nothing was left behind by all that
    assert not listed(base)


def test_patch_trickles_refuses_restarts_and_others_etags(server, media):
    base = server.http_url
    created = http("POST", endpoint(base, "whep", "vod-live://live.mp4"),
                   run(offer_of("audio", "video")).encode(), SDP)
    assert created.status == 201
    url, etag = base + created.headers["location"], created.headers["etag"]
    ufrag = next(line for line in run(offer_of("video")).splitlines()
                 if line.startswith("a=ice-ufrag:"))
    frag = {"Content-Type": "application/trickle-ice-sdpfrag"}
    body = (f"{ufrag}\r\na=ice-pwd:abcdefghijklmnopqrstuvwx\r\nm=audio 9 UDP/TLS/RTP/SAVPF 0\r\n"
            "a=mid:0\r\na=candidate:1 1 udp 2130706431 127.0.0.1 9 typ host\r\n").encode()
    cases = {
        "restart": (body, {**frag, "If-Match": "*"}, 422, "ICE restart is not supported"),
        "other etag": (body, {**frag, "If-Match": '"other"'}, 412, "entity tag"),
        "other credentials": (body, {**frag, "If-Match": etag}, 422, "credentials"),
        "garbage": (b"a=ice-ufrag:abcd\r\na=candidate:hello there\r\n", frag, 400,
                    "not an ICE candidate"),
        "no ufrag": (b"a=candidate:1 1 udp 1 127.0.0.1 9 typ host\r\n", frag, 400,
                     "ice-ufrag"),
        "wrong type": (body, {"Content-Type": "application/sdp"}, 415, "trickle-ice-sdpfrag"),
        "too many": (b"a=ice-ufrag:abcd\r\n" + b"a=candidate:1 1 udp 1 127.0.0.1 9 typ host\r\n"
                     * 100, frag, 400, "more than 64"),
    }
    for case, (payload, headers, status, says) in cases.items():
        answer = http("PATCH", url, payload, headers)
        assert answer.status == status and says in answer.text, (case, answer.status, answer.text)
    secret = created.headers["location"].rsplit("/", 1)[1]
    for unknown in (f"{base}/whep/x/nothing", f"{base}/whep/x/forged.1.1",
                    f"{base}/whep/x/forged.9.9", f"{base}/whep/vod%3A%2F%2Fmain.mp4/{secret}",
                    f"{base}/whip/vod-live%3A%2F%2Flive.mp4/{secret}"):
        assert http("PATCH", unknown, body, frag).status == 404
        assert http("DELETE", unknown).status == 404
    # the session lived through all that
    assert [i["mediaProvider"] for i in listed(base)] == ["WHEP"]
    assert http("DELETE", url).status == 200


def test_any_worker_serves_a_session_s_url(server, media):
    """The DELETE and PATCH reach the worker that did not answer the POST: it
    asks the one that holds the session (through the supervisor)."""
    base = server.http_url
    workers = wait_for_workers(server)
    created = http("POST", endpoint(base, "whep", "vod-live://live.mp4"),
                   run(offer_of("audio", "video")).encode(), SDP)
    assert created.status == 201
    resource = unquote(created.headers["location"].rsplit("/", 1)[-1])
    holder = int(resource.partition(".")[2].rpartition("/")[2].split(".")[0])  # <token>.<N.G>
    url = base + created.headers["location"]

    async def other_worker(method: str, body: bytes = b"", headers=None):
        """The request accepted by the worker that does not hold the session."""
        with paused(workers[holder]):
            task = asyncio.ensure_future(asyncio.to_thread(http, method, url, body, headers))
            await asyncio.sleep(0.5)  # accepted meanwhile by the other, which asks the holder
        return await task

    ufrag = next(line for line in created.text.splitlines() if line.startswith("a=ice-ufrag:"))
    other = run(other_worker("PATCH", f"{ufrag}\r\n".encode(),
                             {"Content-Type": "application/trickle-ice-sdpfrag"}))
    assert other.status == 422 and "credentials" in other.text, other.text  # the holder's answer
    deleted = run(other_worker("DELETE"))
    assert deleted.status == 200, deleted.text
    assert not listed_until(base, lambda items: not items)


def session_level(sdp: str) -> str:
    """Candidates and ICE credentials before the first media section, no
    msid-semantic of WebRTC's spelling (libdatachannel's and GStreamer's habits)."""
    lines = sdp.splitlines()
    first = next(i for i, line in enumerate(lines) if line.startswith("m="))
    moved = [line for line in lines[first:]
             if line.startswith(("a=candidate:", "a=end-of-candidates"))]
    credentials = list(dict.fromkeys(
        line for line in lines[first:] if line.startswith(("a=ice-ufrag:", "a=ice-pwd:"))))
    head = [line for line in lines[:first] if not line.startswith("a=msid-semantic")]
    body = [line for line in lines[first:] if line not in moved and line not in credentials]
    return "\r\n".join([*head, "a=msid-semantic: WMS", *credentials, *moved, *body]) + "\r\n"


def ffmpeg_like(sdp: str) -> str:
    """No candidates at all (the client only answers checks and sends its own,
    as ffmpeg's WHIP muxer does) and DTLS passive."""
    kept = [line for line in sdp.splitlines()
            if not line.startswith(("a=candidate:", "a=end-of-candidates"))]
    return "\r\n".join(line.replace("a=setup:actpass", "a=setup:passive")
                       for line in kept) + "\r\n"


def test_whip_takes_other_clients_sdp_habits(server, media):
    base = server.http_url

    async def scenario(name: str, munge) -> None:
        connected = asyncio.Event()
        publishing = asyncio.ensure_future(whip_publish(
            base, name, media / "main.mp4", seconds=6, connected=connected, munge=munge))
        await asyncio.wait_for(connected.wait(), 25)
        viewer = await play(server.ws_url, name, stop_after=2.5)
        published = await publishing
        assert published.created.status == 201, (name, published.created.text)
        assert "connected" in published.state, (name, published.state)
        assert "PLAYING" in viewer.statuses and len(viewer.video) >= 20, (name, viewer.statuses)

    for name, munge in (("session-level", session_level), ("ffmpeg-like", ffmpeg_like)):
        run(scenario(name, munge), timeout=90)


def test_the_query_asks_what_the_sdk_s_fields_do(start_server, media, tmp_path):
    """``/whip/<name>?record=true`` records as publishStream's ``record`` does;
    ``/whep/<name>?width=&height=`` plays at that size as playStream's do."""
    folder = tmp_path / "records"
    folder.mkdir()
    (folder / "main.mp4").write_bytes((media / "main.mp4").read_bytes())
    server = start_server(media_dir=str(folder))
    base = server.http_url
    bad = http("POST", endpoint(base, "whip", "rec") + "?record=maybe",
               run(offer_of("video")).encode(), SDP)
    assert bad.status == 400 and "'record' must be true or false" in bad.text, bad.text
    bad = http("POST", endpoint(base, "whep", "vod://main.mp4") + "?width=huge",
               run(offer_of("video")).encode(), SDP)
    assert bad.status == 400 and "'width' must be a number" in bad.text, bad.text

    async def scenario():
        connected = asyncio.Event()
        publishing = asyncio.ensure_future(whip_publish(
            base, "rec", media / "main.mp4", seconds=5, connected=connected,
            query="?record=true"))
        await asyncio.wait_for(connected.wait(), 20)
        items = await asyncio.to_thread(
            listed_until, base, lambda items: any(i["status"] == "PUBLISHING" for i in items))
        assert [i["record"] for i in items] == [True], items
        await publishing

    run(scenario(), timeout=60)
    deadline = time.monotonic() + 15
    while not list(folder.glob("rec*.mp4")) and time.monotonic() < deadline:
        time.sleep(0.2)
    records = list(folder.glob("rec*.mp4"))
    assert len(records) == 1, list(folder.iterdir())
    replayed = run(whep_play(base, f"vod://{records[0].name}", seconds=1.5, audio=False),
                   timeout=60)
    assert replayed.created.status == 201 and len(replayed.frames) > 20
    sized = run(whep_play(base, "vod://main.mp4", seconds=1.5, query="?width=320&height=180"),
                timeout=60)
    assert sized.created.status == 201, sized.created.text
    assert {(w, h) for _, w, h in sized.frames[5:]} == {(320, 180)}


def test_a_whip_publication_plays_over_mse_and_hls_and_is_pushed_over_rtmp(
        server, media, tmp_path):
    from urllib.parse import quote

    from testkit.mse_client import watch as mse_watch
    from testkit.rtmp_receiver import FfmpegReceiver

    receiver = FfmpegReceiver(tmp_path / "got.flv", key="rtmp_pushed").start()
    try:
        base = server.http_url

        async def scenario():
            connected = asyncio.Event()
            publishing = asyncio.ensure_future(whip_publish(
                base, "pushed", media / "main.mp4", seconds=8, connected=connected,
                query=f"?rtmpUrl={quote(receiver.url, safe='')}"))
            await asyncio.wait_for(connected.wait(), 20)
            mse = await mse_watch(server.ws_url, "pushed", 3.0)
            playlist = await asyncio.to_thread(http, "GET",
                                               f"{server.hls_url}/pushed/pushed.m3u8")
            await publishing
            return mse, playlist

        mse, playlist = run(scenario(), timeout=90)
        assert "PLAYING" in mse.statuses and mse.records.get(9, 0) >= 20, (mse.statuses,
                                                                          mse.records)
        assert playlist.status == 200 and "#EXTINF" in playlist.text, playlist.text
        segment = next(line for line in playlist.text.splitlines() if line.endswith(".ts"))
        got = http("GET", f"{server.hls_url}/pushed/{segment}")
        assert got.status == 200 and got.body[:1] == b"G"  # an MPEG-TS packet
        assert receiver.finished(30) == 0, receiver.log()[-2000:]
    finally:
        receiver.kill()
    import subprocess

    frames = subprocess.run(
        ["ffprobe", "-v", "error", "-count_frames", "-select_streams", "v:0", "-show_entries",
         "stream=nb_read_frames,codec_name", "-of", "csv=p=0", str(tmp_path / "got.flv")],
        capture_output=True, text=True, timeout=60).stdout.strip()
    codec, count = frames.split(",")
    assert codec == "h264" and int(count) >= 100, frames
