"""What a hostile client tries, against the real server: each gets a clear
refusal and nothing else changes."""

from __future__ import annotations

import os

from testkit.harness import RawWebSocket
from testkit.rest_client import http_status as status


def test_non_finite_sizes_fail_that_stream_only(start_server, media):
    server = start_server(media_dir=str(media))
    client = RawWebSocket(server.ws_url)
    client.send_json("connection", {})
    client.receive_json()
    for index, raw in enumerate((b"1e999", b"NaN", b"-Infinity")):
        client.send_frame(b'{"message":"playStream","data":[{"mediaSessionId":"m%d",'
                          b'"name":"vod://main.mp4","width":%s}]}' % (index, raw))
        reply = client.receive_json()["data"][0]
        assert reply["status"] == "FAILED" and "finite number" in reply["info"], reply
    client.send_json("ping", None)
    assert client.receive_json()["message"] == "pong"  # the session carries on
    client.close()


def test_hidden_and_partial_files_are_not_played(start_server, media, tmp_path):
    folder = tmp_path / "hidden"
    folder.mkdir()
    (folder / ".cam-1.mp4.part").write_bytes((media / "main.mp4").read_bytes())
    server = start_server(media_dir=str(folder))
    client = RawWebSocket(server.ws_url)
    client.send_json("connection", {})
    client.receive_json()
    client.send_json("playStream", {"mediaSessionId": "m", "name": "vod://.cam-1.mp4.part",
                                    "sdp": "v=0\r\n"})
    reply = client.receive_json()["data"][0]
    assert reply["info"] == "Invalid stream name: hidden files are not allowed"
    client.close()


def test_the_web_folders_list_nothing_and_stay_inside(start_server, media, tmp_path):
    site = tmp_path / "sdk"
    (site / "examples").mkdir(parents=True)
    (site / "flashphoner.js").write_text("// sdk")
    (site / ".hidden.js").write_text("// hidden")
    secret = tmp_path / "secret.txt"
    secret.write_text("secret")
    os.symlink(secret, site / "link.txt")
    server = start_server(media_dir=str(media), websdk_dir=str(site))
    base = f"{server.http_url}/client2/"
    assert status(base + "flashphoner.js") == 200
    for path in ("", "examples/", ".hidden.js", "link.txt", "%00", "a%00b.js",
                 "examples/%00"):
        assert status(base + path) == 404, path
    assert status(f"{server.http_url}/%00") == 404
    assert status(f"{server.http_url}/player.html") == 200  # the player page still serves


def test_with_no_address_to_offer_a_play_fails_at_once_saying_why(start_server, media):
    import time

    from testkit.rtc_client import play, run

    server = start_server(media_dir=str(media), ip="")  # this namespace has loopback only
    assert server.saw("set ip= in flashphoner.properties")  # said at start
    started = time.monotonic()
    got = run(play(server.ws_url, "vod://main.mp4", timeout=15))
    assert got.statuses == ["PENDING", "FAILED"], got.statuses
    assert got.infos == ["No ICE candidate to offer: this server has no address browsers "
                         "can reach (set ip= in flashphoner.properties)"]
    assert time.monotonic() - started < 3  # not the 20 s ICE timeout


def test_aliases_of_a_file_are_one_broadcast(start_server, media, tmp_path):
    from testkit.rest_client import call
    from testkit.rtc_client import play, run

    folder = tmp_path / "aliases"
    (folder / "sub").mkdir(parents=True)
    (folder / "clip.mp4").write_bytes((media / "live.mp4").read_bytes())
    os.symlink(folder / "clip.mp4", folder / "sub" / "link.mp4")
    server = start_server(media_dir=str(folder))
    status, _, _ = call(server.http_url, "/rest-api/vod/startup",
                        {"uri": "vod-live://./clip.mp4", "localStreamName": "show"})
    assert status == 200

    async def three():
        import asyncio
        return await asyncio.gather(*(play(server.ws_url, name, stop_after=2)
                                      for name in ("vod-live://clip.mp4",
                                                   "vod-live://./clip.mp4",
                                                   "vod-live://sub/link.mp4")))

    got = run(three())
    assert all(g.statuses[:2] == ["PENDING", "PLAYING"] for g in got)
    # one reader and one broadcast (a copy on each worker that has a viewer)
    assert set(server.per_worker(f"opened {folder / 'clip.mp4'}").values()) == {1}
    assert set(server.per_worker("created for vod-live://clip.mp4").values()) == {1}
    status, found, _ = call(server.http_url, "/rest-api/vod/find", {"localStreamName": "show"})
    assert found[0]["uri"] == "vod-live://clip.mp4"

def rss(pid: int) -> int:
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def test_a_client_that_never_reads_is_cut_off_with_memory_bounded(start_server, media):
    import time

    server = start_server(media_dir=str(media), ws_send_buffer="262144",
                          ws_message_rate="1000000")  # the flood is of replies, not messages
    pid = server.process.pid
    flood = RawWebSocket(server.ws_url, receive_buffer=4096)
    flood.send_json("connection", {})
    before = rss(pid)
    name = "vod://" + "a" * 1000 + ".mp4"  # each FAILED reply echoes it: 1 KB out
    started, sent = time.monotonic(), 0
    try:
        while time.monotonic() - started < 8:  # never reads a reply
            flood.send_frame(b'{"message":"playStream","data":[{"mediaSessionId":"m%d",'
                             b'"name":"%s"}]}' % (sent, name.encode()))
            sent += 1
    except OSError:
        pass  # the server cut it off
    peak = rss(pid)
    print(f"never-read flood: {sent} messages in 8 s, server RSS {before / 2**20:.0f} -> "
          f"{peak / 2**20:.0f} MiB")
    assert sent > 1000
    assert peak - before < 40 * 2**20, (before, peak)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and "the client reads nothing" not in server.log():
        time.sleep(0.1)
    assert server.saw("the client reads nothing")
    # and everyone else is served as ever
    other = RawWebSocket(server.ws_url)
    other.send_json("connection", {})
    assert other.receive_json()["message"] == "getUserData"
    other.send_json("sendData", {"operationId": {"deep": 1}})
    assert "operationId" in other.receive_json()["data"][0]["info"]
    other.close()
