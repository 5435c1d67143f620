"""Caps, safe defaults and a reactor that floods cannot stall, against the real
server: each limit refused with its key named, everyone else served as ever."""

from __future__ import annotations

import socket
import statistics
import threading
import time

import pytest

from testkit.harness import RawWebSocket
from testkit.rest_client import call


def connected(server, **kwargs) -> RawWebSocket:
    client = RawWebSocket(server.ws_url, **kwargs)
    client.send_json("connection", {})
    assert client.receive_json()["message"] == "getUserData"
    return client


def refused(server, **kwargs) -> str:
    """The status line of a handshake the server refuses."""
    with pytest.raises(ConnectionError) as error:
        RawWebSocket(server.ws_url, **kwargs)
    return str(error.value)


def stream_statuses(client: RawWebSocket, count: int) -> list[dict]:
    """The next ``count`` stream status events (other messages skipped)."""
    out: list[dict] = []
    deadline = time.monotonic() + 10
    while len(out) < count and time.monotonic() < deadline:
        message = client.receive_json(timeout=max(0.1, deadline - time.monotonic()))
        if message["message"] == "notifyStreamStatusEvent":
            out.append(message["data"][0])
    return out


def closing_reason(client: RawWebSocket) -> tuple[int, str]:
    """Read until the server's close frame: its (code, reason)."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        opcode, payload = client.receive()
        if opcode == 8:
            return int.from_bytes(payload[:2], "big"), payload[2:].decode()
    raise AssertionError("the server did not close")


def test_sessions_are_capped_in_all_and_per_address(start_server, media):
    server = start_server(media_dir=str(media), max_sessions="4", max_sessions_per_address="2")
    mine = [connected(server), connected(server)]
    line = refused(server)
    assert "503" in line and "max_sessions_per_address=2" in line, line
    others = [connected(server, source="127.0.0.2"), connected(server, source="127.0.0.3")]
    line = refused(server, source="127.0.0.4")
    assert "503" in line and "max_sessions=4" in line, line
    for client in mine:  # the open sessions are unharmed
        client.send_json("ping", None)
        assert client.receive_json()["message"] == "pong"
    mine.pop().close()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:  # its place is free again once the server sees it go
        try:
            mine.append(connected(server))
            break
        except ConnectionError:
            time.sleep(0.1)
    assert len(mine) == 2
    for client in mine + others:
        client.close()


def test_plays_and_publishes_per_session(start_server, media):
    server = start_server(media_dir=str(media), max_plays_per_session="2",
                          max_publishes_per_session="1")
    client = connected(server)
    for index in range(3):  # MSE plays wait for their media socket: they stay active
        client.send_json("playStream", {"mediaSessionId": f"p{index}", "name": "vod://main.mp4",
                                        "mediaProvider": "MSE"})
    failed = [m for m in stream_statuses(client, 3) if m["status"] == "FAILED"]
    assert [f["mediaSessionId"] for f in failed] == ["p2"], failed
    assert failed[0]["info"] == ("Limit reached: plays in one session "
                                 "(max_plays_per_session=2)")
    client.send_json("stopStream", {"mediaSessionId": "p0", "name": "vod://main.mp4"})
    client.send_json("playStream", {"mediaSessionId": "p3", "name": "vod://main.mp4",
                                    "mediaProvider": "MSE"})
    statuses = {m["mediaSessionId"]: m["status"] for m in stream_statuses(client, 2)}
    assert statuses == {"p0": "STOPPED", "p3": "PENDING"}, statuses
    client.close()


def test_broadcasts_and_rest_startups_are_capped(start_server, media, tmp_path):
    folder = tmp_path / "many"
    folder.mkdir()
    for name in ("a", "b", "c"):
        (folder / f"{name}.mp4").write_bytes((media / "live.mp4").read_bytes())
    server = start_server(media_dir=str(folder), max_broadcasts="2", max_rest_startups="1")
    status, _, _ = call(server.http_url, "/rest-api/vod/startup",
                        {"uri": "vod-live://a.mp4", "localStreamName": "one"})
    assert status == 200
    status, body, _ = call(server.http_url, "/rest-api/vod/startup",
                           {"uri": "vod-live://b.mp4", "localStreamName": "two"})
    assert status == 429 and "max_rest_startups=1" in body["message"], body
    client = connected(server)
    for index, name in enumerate(("vod-live://b.mp4", "vod-live://c.mp4")):
        client.send_json("playStream", {"mediaSessionId": f"m{index}", "name": name,
                                        "mediaProvider": "MSE"})
    replies = {m["mediaSessionId"]: m for m in stream_statuses(client, 2)}
    assert replies["m1"]["status"] == "FAILED"
    assert replies["m1"]["info"] == ("Limit reached: vod-live broadcasts running "
                                     "(max_broadcasts=2)")
    assert replies.get("m0", {}).get("status") != "FAILED"
    # a play of a running broadcast is no new broadcast: it still joins
    client.send_json("playStream", {"mediaSessionId": "m2", "name": "vod-live://a.mp4",
                                    "mediaProvider": "MSE"})
    data = stream_statuses(client, 1)[0]
    assert data["mediaSessionId"] == "m2" and data["status"] == "PENDING", data
    client.close()


def test_a_session_sending_too_fast_is_closed_saying_why(start_server, media):
    server = start_server(media_dir=str(media), ws_message_rate="5")
    calm = connected(server)
    flood = connected(server)
    for _ in range(40):
        flood.send_json("ping", None)
    code, reason = closing_reason(flood)
    assert code == 4429 and "ws_message_rate=5" in reason, (code, reason)
    calm.send_json("ping", None)
    assert calm.receive_json()["message"] == "pong"
    calm.close()


def http_exchange(port: int, request: bytes, then: bytes = b"", wait: float = 5.0) -> bytes:
    """Send a raw request (and more after it, if the server still reads), return the answer."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=wait)
    sock.sendall(request)
    answer = b""
    try:
        if then:
            sock.sendall(then)
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            answer += chunk
    except OSError:
        pass
    sock.close()
    return answer


def test_a_huge_body_is_refused_from_its_headers(start_server, media):
    server = start_server(media_dir=str(media))
    port = int(server.http_url.rsplit(":", 1)[1])
    started = time.monotonic()
    answer = http_exchange(port, b"POST /rest-api/vod/startup HTTP/1.1\r\nHost: x\r\n"
                                 b"Content-Type: application/json\r\n"
                                 b"Content-Length: 1073741824\r\n\r\n", b"{" * 4096)
    assert answer.startswith(b"HTTP/1.1 413 "), answer[:200]
    assert b"65536 bytes" in answer and time.monotonic() - started < 3
    chunk = b"%x\r\n%s\r\n" % (32768, b" " * 32768)
    answer = http_exchange(port, b"POST /nowhere HTTP/1.1\r\nHost: x\r\n"
                                 b"Transfer-Encoding: chunked\r\n\r\n", chunk * 4)
    assert answer.startswith(b"HTTP/1.1 413 "), answer[:200]
    status, _, _ = call(server.http_url, "/rest-api/vod/find_all", method="GET")
    assert status == 404  # the API answers as ever (no streams)
    assert server.saw("body of 1073741824 bytes refused (413)")


def test_many_ranges_in_one_request_are_refused(start_server, media):
    server = start_server(media_dir=str(media))
    port = int(server.http_url.rsplit(":", 1)[1])
    many = ",".join(["0-"] * 20).encode()
    answer = http_exchange(port, b"GET /player.html HTTP/1.1\r\nHost: x\r\nRange: bytes=%s\r\n"
                                 b"Connection: close\r\n\r\n" % many)
    assert answer.startswith(b"HTTP/1.1 416 ") and b"at most 8 ranges" in answer, answer[:200]
    few = http_exchange(port, b"GET /player.html HTTP/1.1\r\nHost: x\r\nRange: bytes=0-9,20-29\r\n"
                              b"Connection: close\r\n\r\n")
    assert few.startswith(b"HTTP/1.1 206 "), few[:200]


def test_other_sites_pages_are_refused_by_default(start_server, media):
    server = start_server(media_dir=str(media))
    # a page elsewhere posting text/plain (no preflight needed by a browser)
    status, body, headers = call(server.http_url, "/rest-api/vod/startup",
                                 raw=b'{"uri": "vod-live://main.mp4", "localStreamName": "x"}',
                                 headers={"Origin": "http://evil.example",
                                          "Content-Type": "text/plain"})
    assert status == 403 and "rest_cors_origins" in body["message"]
    assert "Access-Control-Allow-Origin" not in headers
    status, body, _ = call(server.http_url, "/rest-api/vod/startup",
                           raw=b'{"uri": "vod-live://main.mp4", "localStreamName": "x"}',
                           headers={"Content-Type": "text/plain"})
    assert status == 415 and "application/json" in body["message"]
    status, _, _ = call(server.http_url, "/rest-api/vod/find_all", method="GET")
    assert status == 404  # nothing was started
    line = refused(server, headers={"Origin": "http://evil.example"})
    assert "403" in line and "ws_allowed_origins" in line, line
    connected(server, headers={"Origin": server.http_url}).close()  # its own pages


def test_listed_origins_are_let_in(start_server, media):
    server = start_server(media_dir=str(media), rest_cors_origins="https://app.example",
                          ws_allowed_origins="https://app.example")
    status, _, headers = call(server.http_url, "/rest-api/vod/startup",
                              {"uri": "vod-live://main.mp4", "localStreamName": "x"},
                              headers={"Origin": "https://app.example"})
    assert status == 200 and headers["Access-Control-Allow-Origin"] == "https://app.example"
    connected(server, headers={"Origin": "https://app.example"}).close()


def rest_latencies(url: str, stop: threading.Event, out: list[float]) -> None:
    while not stop.is_set() and len(out) < 2000:
        started = time.monotonic()
        status, _, _ = call(url, "/rest-api/vod/find", {"localStreamName": "probe"})
        out.append(time.monotonic() - started)
        assert status in (200, 404)
        time.sleep(0.01)


@pytest.mark.alone  # a load test: no other test beside it
def test_floods_of_opens_leave_rest_fast(start_server, media):
    """1,000 startups and 1,000 availableStreams at once: the first 100 startups
    run (max_rest_startups), the rest are refused, and the REST API keeps
    answering in well under 100 ms (files are opened off the reactor)."""
    server = start_server(media_dir=str(media))  # the default caps
    stop, latencies = threading.Event(), []
    prober = threading.Thread(target=rest_latencies, args=(server.http_url, stop, latencies))
    prober.start()
    time.sleep(0.5)
    idle = list(latencies)
    clients = [connected(server) for _ in range(20)]
    try:
        for index in range(50):
            for number, client in enumerate(clients):
                client.send_json("availableStream", {"mediaSessionId": f"a{index}",
                                                     "name": "vod://bframes.mp4"})

        def startups(first: int) -> list[int]:
            return [call(server.http_url, "/rest-api/vod/startup",
                         {"uri": "vod-live://main.mp4", "localStreamName": f"s{n}"},
                         check=False)[0] for n in range(first, first + 250)]

        results: list[list[int]] = [[] for _ in range(4)]
        workers = [threading.Thread(target=lambda i=i: results[i].extend(startups(i * 250)))
                   for i in range(4)]
        for worker in workers:
            worker.start()
        answers = [[client.receive_json(timeout=60)["data"][0] for _ in range(50)]
                   for client in clients]
        for worker in workers:
            worker.join(120)
    finally:
        stop.set()
        prober.join(30)
    statuses = [status for part in results for status in part]
    assert len(statuses) == 1000 and set(statuses) <= {200, 429}, set(statuses)
    assert statuses.count(200) == 100  # max_rest_startups
    infos = {a["info"] for each in answers for a in each}
    assert len([a for each in answers for a in each]) == 1000
    assert infos <= {"Available", "Limit reached: files being opened at once "
                                  "(max_pending_opens=64)"}, infos
    during = latencies[len(idle):]
    assert len(during) > 20
    worst = sorted(during)[int(0.95 * len(during))]
    print(f"REST latency: idle median {statistics.median(idle) * 1000:.1f} ms; during the "
          f"flood median {statistics.median(during) * 1000:.1f} ms, p95 {worst * 1000:.1f} ms,"
          f" max {max(during) * 1000:.1f} ms over {len(during)} calls; startups "
          f"{statuses.count(200)} ok, {statuses.count(429)} refused")
    assert worst < 0.1, worst
    for client in clients:
        client.close()


def open_fds(pid: int) -> int:
    """Descriptors the server holds: the process and its workers, if any."""
    import os

    from testkit.procfs import children

    total = 0
    for member in [pid, *children(pid)]:
        try:
            total += len(os.listdir(f"/proc/{member}/fd"))
        except FileNotFoundError:
            pass
    return total


@pytest.mark.alone  # a load test: no other test beside it
def test_ten_thousand_idle_connections_leave_rest_and_plays_working(start_server, media):
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    assert hard >= 12000, f"this test needs nofile >= 12000 (hard limit {hard})"
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    server = start_server(media_dir=str(media), http_idle_timeout="5")
    assert server.saw("open-file limit:")
    pid = server.process.pid
    before = open_fds(pid)
    http_port = int(server.http_url.rsplit(":", 1)[1])
    ws_port = int(server.ws_url.rsplit(":", 1)[1].split("/")[0])
    idle: list[socket.socket] = []
    try:
        held = 0
        deadline = time.monotonic() + 60
        for batch in range(20):  # 500 at a time: no SYN is dropped from a full backlog
            for index in range(500):  # (a retried SYN may come after the idle timeout)
                sock = socket.socket()
                sock.setblocking(False)
                sock.connect_ex(("127.0.0.1", http_port if index % 2 else ws_port))
                idle.append(sock)
            while open_fds(pid) < before + len(idle) - 10 and time.monotonic() < deadline:
                time.sleep(0.05)
            held = max(held, open_fds(pid) - before)
        assert held >= 9_900, held  # the server really holds them
        started = time.monotonic()
        status, _, _ = call(server.http_url, "/rest-api/vod/find_all", method="GET")
        assert status == 404 and time.monotonic() - started < 1
        client = connected(server)
        client.send_json("availableStream", {"mediaSessionId": "a", "name": "vod://main.mp4"})
        assert client.receive_json()["data"][0]["status"] == "true"
        client.close()
        # idle connections are closed by the server: HTTP after http_idle_timeout,
        # WebSocket ones that never send a handshake after its 10 s timeout
        deadline = time.monotonic() + 30
        while open_fds(pid) > before + 50 and time.monotonic() < deadline:
            time.sleep(0.5)
        print(f"server fds: {before} before, +{held} with 10,000 idle connections, "
              f"{open_fds(pid)} after their timeouts")
        assert open_fds(pid) <= before + 50
    finally:
        for sock in idle:
            sock.close()
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_availablestream_answers_every_message(start_server, media):
    """availableStream is answered after the file is checked off the reactor."""
    server = start_server(media_dir=str(media))
    client = connected(server)
    for name in ("vod://main.mp4", "vod://absent.mp4", "vod://not-an-mp4.mp4"):
        client.send_json("availableStream", {"mediaSessionId": name, "name": name})
    answers = {m["data"][0]["id"]: m["data"][0]
               for m in (client.receive_json() for _ in range(3))}
    assert answers["vod://main.mp4"]["status"] == "true"
    absent = answers["vod://absent.mp4"]
    assert (absent["status"], absent["info"]) == ("false", "File not found")
    assert answers["vod://not-an-mp4.mp4"]["status"] == "false"
    assert answers["vod://not-an-mp4.mp4"]["info"].startswith("File has wrong format")
    client.close()


def test_a_request_trickled_in_is_cut_off_at_the_idle_timeout(start_server, media):
    """Slowloris: a byte a second keeps Twisted's own timeout from firing."""
    server = start_server(media_dir=str(media), http_idle_timeout="3")
    port = int(server.http_url.rsplit(":", 1)[1])
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    started, answer = time.monotonic(), b""
    try:
        for byte in b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 20:
            sock.sendall(bytes([byte]))
            time.sleep(0.5)
    except OSError:
        pass  # cut off
    try:
        answer = sock.recv(4096)
    except OSError:
        pass
    sock.close()
    assert answer.startswith(b"HTTP/1.1 408 "), answer
    assert time.monotonic() - started < 6
    status, _, _ = call(server.http_url, "/rest-api/vod/find_all", method="GET")
    assert status == 404  # others are served as ever; kept-alive clients too:
    keep = socket.create_connection(("127.0.0.1", port), timeout=10)
    for _ in range(2):
        keep.sendall(b"GET /config.json HTTP/1.1\r\nHost: x\r\n\r\n")
        assert keep.recv(4096).startswith(b"HTTP/1.1 200 ")
    keep.close()
