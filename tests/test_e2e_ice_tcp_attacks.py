"""The ICE-TCP port under attack, while a browser plays over it.

Garbage, oversized frames, STUN with a stranger's username or a known
username without its password, and ten thousand connections that never say
anything: each is closed, the descriptors they hold stay bounded, the
browser's play goes on, and the port still takes new plays.
"""

from __future__ import annotations

import re
import socket
import struct
import time

import pytest
from aioice import stun

from tests.test_e2e_ice_tcp import plays_without_freezing, sdk_play, selected, wait_statuses
from testkit.pages import video_state
from tests.test_e2e_metrics import read as metrics
from tests.test_e2e_metrics import value
from testkit.workers import wait_for_workers

#: Seconds a silent connection is kept (wcs/webrtc/icetcp.py FIRST_FRAME_WAIT), and
#: connections waiting for a first frame a worker keeps (MAX_UNCLAIMED).
FIRST_FRAME_WAIT = 10.0
MAX_UNCLAIMED = 1024


def frame(data: bytes) -> bytes:
    return struct.pack("!H", len(data)) + data


def binding(username: str, password: str | None) -> bytes:
    message = stun.Message(message_method=stun.Method.BINDING, message_class=stun.Class.REQUEST)
    message.attributes["USERNAME"] = username
    message.attributes["PRIORITY"] = 1853824767
    message.attributes["ICE-CONTROLLING"] = 1
    if password is not None:
        message.add_message_integrity(password.encode())
    message.add_fingerprint()
    return bytes(message)


def closed_by_server(port: int, payload: bytes, timeout: float = 5.0) -> bool:
    """Send ``payload``; True if the server then closes the connection."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        try:
            sock.sendall(payload)
        except OSError:
            return True  # closed while we still sent: closed all the same
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                data = sock.recv(65536)
            except ConnectionResetError:
                return True
            except TimeoutError:
                return False
            if not data:
                return True
        return False


def open_fds(pid: int) -> int:
    import os

    return len(os.listdir(f"/proc/{pid}/fd"))


def ice_credentials(page) -> tuple[str, str]:
    sdp = page.evaluate("window.__remoteSdps[window.__remoteSdps.length - 1]")
    ufrag = re.search(r"a=ice-ufrag:(\S+)", sdp)[1]
    local = page.evaluate("window.__pcs[window.__pcs.length - 1].localDescription.sdp")
    theirs = re.search(r"a=ice-ufrag:(\S+)", local)[1]
    return ufrag, theirs


def test_garbage_strangers_and_forgers_are_closed_and_the_play_goes_on(start_server, page, media):
    server = start_server(media_dir=str(media), vod_live_loop="true")
    port = server.ports["ice_tcp_port"]
    sdk_play(page, server, "vod-live://live.mp4", transport="TCP")
    wait_statuses(page, "PLAYING")
    plays_without_freezing(page, 1.0, strict=False)
    ours, theirs = ice_credentials(page)
    before = video_state(page, "#display video")
    attacks = {
        "garbage": frame(b"\x17\xfe\xfd" + b"x" * 200),
        "not a frame at all": b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
        "oversized": struct.pack("!H", 65535) + b"\x00" * 70_000,
        "STUN that is not a request": frame(
            bytes(
                stun.Message(
                    message_method=stun.Method.BINDING, message_class=stun.Class.INDICATION
                )
            )
        ),
        "a stranger's username": frame(binding("nobody:" + theirs, "x" * 22)),
        "a known username, no integrity": frame(binding(f"{ours}:{theirs}", None)),
        "a known username, a wrong password": frame(binding(f"{ours}:{theirs}", "y" * 22)),
    }
    for name, payload in attacks.items():
        assert closed_by_server(port, payload), f"{name}: the connection stayed open"
    found = metrics(server)
    assert value(found, "wcsvod_ice_tcp_connections_total", outcome="refused") >= len(attacks)
    assert value(found, "wcsvod_ice_tcp_connections_total", outcome="claimed") >= 1
    plays_without_freezing(page, 2.0, strict=False)
    later = video_state(page, "#display video")
    assert later["time"] > before["time"] + 2.0
    assert selected(page)["local"] == "tcp"


def test_a_silent_connection_is_closed_after_the_first_frame_wait(start_server, media):
    server = start_server(media_dir=str(media))
    started = time.monotonic()
    assert closed_by_server(server.ports["ice_tcp_port"], b"", timeout=FIRST_FRAME_WAIT + 5)
    assert FIRST_FRAME_WAIT - 0.5 <= time.monotonic() - started <= FIRST_FRAME_WAIT + 5


@pytest.mark.alone  # a load test: no other test beside it
def test_ten_thousand_idle_connections_stay_bounded_and_tcp_plays_go_on(start_server, page, media):
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    assert hard >= 12000, f"this test needs nofile >= 12000 (hard limit {hard})"
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    server = start_server(media_dir=str(media), vod_live_loop="true")
    port = server.ports["ice_tcp_port"]
    workers = wait_for_workers(server)
    before = {pid: open_fds(pid) for pid in workers.values()}
    sdk_play(page, server, "vod-live://live.mp4", transport="TCP")
    wait_statuses(page, "PLAYING")
    plays_without_freezing(page, 1.0, strict=False)
    idle: list[socket.socket] = []
    most = {pid: 0 for pid in before}
    try:
        for _batch in range(20):  # 500 at a time: no SYN dropped from a full backlog
            for _ in range(500):
                sock = socket.socket()
                sock.setblocking(False)
                sock.connect_ex(("127.0.0.1", port))
                idle.append(sock)
            time.sleep(0.1)
            for pid in before:
                most[pid] = max(most[pid], open_fds(pid) - before[pid])
        time.sleep(1.0)
        for pid in before:
            most[pid] = max(most[pid], open_fds(pid) - before[pid])
        # each worker keeps at most MAX_UNCLAIMED silent connections (and its sockets
        # to the playing browser): the rest were closed as they came
        assert all(extra <= MAX_UNCLAIMED + 50 for extra in most.values()), most
        assert sum(most.values()) >= MAX_UNCLAIMED, most  # they were really taken
        plays_without_freezing(page, 2.0, strict=False)  # the play over TCP goes on
        second = page.context.new_page()
        try:
            sdk_play(second, server, "vod://main.mp4", transport="TCP")  # the port still takes one
            wait_statuses(second, "PLAYING")
            plays_without_freezing(second, 1.0, strict=False)
        finally:
            second.close()
        deadline = time.monotonic() + FIRST_FRAME_WAIT + 10
        while time.monotonic() < deadline and any(
            open_fds(pid) > before[pid] + 50 for pid in before
        ):
            time.sleep(0.5)
        after = {pid: open_fds(pid) - before[pid] for pid in before}
        print(f"ICE-TCP flood: most descriptors held per worker {most}, {after} after the wait")
        assert all(extra <= 50 for extra in after.values()), after
    finally:
        for sock in idle:
            sock.close()
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
