"""WebRTC media over TCP (ICE-TCP), with the official SDK's API in Chromium.

The SDK's ``transport: "TCP"`` makes the server offer its passive TCP
candidate only; by default it offers it beside the UDP ones, so that a
browser whose UDP is blocked still connects. The selected candidate pair is
read from Chromium's own ``getStats``.
"""

from __future__ import annotations

import contextlib
import json
import re
import subprocess
import time

import pytest

from testkit.browser import recorded_page
from testkit.pages import video_state, wait_video
from testkit.workers import Steering, paused, wait_for_workers

SDK_PAGE = """<!DOCTYPE html><html><body>
<div id="display" style="width:320px;height:240px"></div>
<div id="publisher" style="width:320px;height:240px"></div>
<div id="status"></div><div id="info"></div>
<script src="/client2/flashphoner.js"></script><script>
Flashphoner.init({});
window.statuses = [];
window.infos = [];
const options = %(options)s;
Flashphoner.createSession({urlServer: "%(ws)s"})
  .on(Flashphoner.constants.SESSION_STATUS.ESTABLISHED, function (session) {
    window.session = session;
    const stream = session.createStream(Object.assign(
        {name: "%(name)s", display: document.getElementById("display")}, options));
    for (const status of ["PLAYING", "STOPPED", "FAILED"]) {
      stream.on(Flashphoner.constants.STREAM_STATUS[status], function (s) {
        statuses.push(status); infos.push(s.getInfo());
        document.getElementById("status").textContent = status;
        document.getElementById("info").textContent = s.getInfo();
      });
    }
    window.stream = stream;
    stream.play();
  });
</script></body></html>"""

PUBLISH_PAGE = """<!DOCTYPE html><html><body>
<div id="publisher" style="width:320px;height:240px"></div>
<script src="/client2/flashphoner.js"></script><script>
Flashphoner.init({});
window.published = [];
Flashphoner.createSession({urlServer: "%(ws)s"})
  .on(Flashphoner.constants.SESSION_STATUS.ESTABLISHED, function (session) {
    session.createStream({name: "%(name)s", display: document.getElementById("publisher"),
                          transport: "%(transport)s"})
      .on(Flashphoner.constants.STREAM_STATUS.PUBLISHING, function () {
        published.push("PUBLISHING"); })
      .on(Flashphoner.constants.STREAM_STATUS.FAILED, function (s) {
        published.push("FAILED:" + s.getInfo()); })
      .publish();
  });
</script></body></html>"""

#: The selected pair of the page's peer connection(s), by Chromium's getStats.
SELECTED_PAIR = """async () => {
  const out = [];
  for (const pc of window.__pcs) {
    const report = await pc.getStats();
    let pairId = null;
    for (const s of report.values()) {
      if (s.type === 'transport' && s.selectedCandidatePairId) pairId = s.selectedCandidatePairId;
    }
    if (!pairId) { out.push(null); continue; }
    const pair = report.get(pairId);
    const local = report.get(pair.localCandidateId);
    const remote = report.get(pair.remoteCandidateId);
    out.push({local: local.protocol, remote: remote.protocol, remotePort: remote.port,
              localType: local.candidateType, relay: local.relayProtocol || null,
              bytesReceived: pair.bytesReceived});
  }
  return out;
}"""


def sdk_play(page, server, name: str, url: str = "", **options: str) -> None:
    page.goto(server.http_url + "/config.json")
    page.set_content(
        SDK_PAGE % {"ws": url or server.ws_url, "name": name, "options": json.dumps(options)}
    )


def wait_statuses(page, wanted: str, timeout: float = 20.0) -> list[str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        statuses = page.evaluate("window.statuses || []")
        if wanted in statuses or "FAILED" in statuses:
            break
        time.sleep(0.1)
    statuses = page.evaluate("window.statuses || []")
    assert wanted in statuses, (statuses, page.evaluate("window.infos || []"))
    return statuses


def selected(page) -> dict:
    pairs = [pair for pair in page.evaluate(SELECTED_PAIR) if pair]
    assert pairs, "no selected candidate pair"
    return pairs[-1]


INBOUND_VIDEO = """async () => {
    const pc = window.__pcs[window.__pcs.length - 1];
    for (const s of (await pc.getStats()).values())
      if (s.type === 'inbound-rtp' && s.kind === 'video')
        return {framesDecoded: s.framesDecoded, freezeCount: s.freezeCount};
    return null; }"""


def plays_without_freezing(page, seconds: float = 3.0, settle: float = 0.0,
                           strict: bool = True) -> dict:
    """Decoded pictures and time advancing over ``seconds`` (from the first frame,
    or ``settle`` seconds after it: a camera's first frames come unevenly, over
    UDP as over TCP); with ``strict``, no freeze either, which only a test that
    runs alone can promise (two cores shared by parallel tests and their
    browsers starve a decoder now and then, whatever the transport)."""
    first = wait_video(page, "#display video")
    assert first["width"] > 0
    time.sleep(settle)
    before = page.evaluate(INBOUND_VIDEO)
    start = video_state(page, "#display video")
    time.sleep(seconds)
    later = video_state(page, "#display video")
    assert later["time"] - start["time"] >= seconds - 0.6, (start, later)
    stats = page.evaluate(INBOUND_VIDEO)
    if strict:
        assert stats["freezeCount"] == (before["freezeCount"] if settle else 0), (before, stats)
    assert stats["framesDecoded"] > before["framesDecoded"], (before, stats)
    return later


def only_tcp_candidates(page) -> list[str]:
    sdp = page.evaluate("window.__remoteSdps[window.__remoteSdps.length - 1]")
    candidates = [line for line in sdp.splitlines() if line.startswith("a=candidate:")]
    assert candidates and all(
        " tcp " in line and "tcptype passive" in line for line in candidates
    ), candidates
    return candidates


@pytest.mark.alone  # no freeze: nothing else on the two cores
def test_transport_tcp_plays_files_and_publications_without_a_freeze(start_server, browser,
                                                                      page, media):
    """``vod://`` and ``vod-live://`` over TCP; then a camera's stream, published over
    UDP and over TCP, to a TCP viewer. One test, run alone: no-freeze is only
    promised with nothing else on the two cores."""
    server = start_server(media_dir=str(media))
    for name in ("vod://main.mp4", "vod-live://live.mp4"):
        sdk_play(page, server, name, transport="TCP")
        wait_statuses(page, "PLAYING")
        plays_without_freezing(page)
        pair = selected(page)
        assert pair["local"] == "tcp" and pair["remote"] == "tcp", (name, pair)
        assert pair["remotePort"] == server.ports["ice_tcp_port"], pair
        only_tcp_candidates(page)
    for up in ("UDP", "TCP"):
        publisher = recorded_page(browser)
        try:
            publisher.goto(server.http_url + "/config.json")
            publisher.set_content(
                PUBLISH_PAGE % {"ws": server.ws_url, "name": f"cam{up}", "transport": up}
            )
            publisher.wait_for_function("window.published.length > 0", timeout=20000)
            assert publisher.evaluate("window.published") == ["PUBLISHING"]
            assert selected(publisher)["local"] == up.lower()
            sdk_play(page, server, f"cam{up}", transport="TCP")
            wait_statuses(page, "PLAYING")
            plays_without_freezing(page, settle=1.0)  # (a camera's first second is uneven)
            assert selected(page)["local"] == "tcp"
        finally:
            publisher.context.close()


def test_by_default_udp_and_tcp_are_offered_and_udp_is_chosen(start_server, page, media):
    server = start_server(media_dir=str(media))
    sdk_play(page, server, "vod://main.mp4")
    wait_statuses(page, "PLAYING")
    plays_without_freezing(page, 1.0, strict=False)
    sdp = page.evaluate("window.__remoteSdps[window.__remoteSdps.length - 1]")
    candidates = [line for line in sdp.splitlines() if line.startswith("a=candidate:")]
    assert any(" udp " in line.lower() for line in candidates), candidates
    assert any("tcptype passive" in line for line in candidates), candidates
    assert selected(page)["local"] == "udp"


@contextlib.contextmanager
def nft_dropping(*matches: list[str]):
    """Drops what each nft match names, in the test's namespace only, for the block
    (a table of its own, deleted after)."""
    table = f"wcsvod_drop_{int(time.time() * 1000) % 100000}"
    rules = [
        ["nft", "add", "table", "inet", table],
        ["nft", "add", "chain", "inet", table, "input",
         "{ type filter hook input priority 0; policy accept; }"],
        *(["nft", "add", "rule", "inet", table, "input", *match, "drop"] for match in matches),
    ]
    try:
        for rule in rules:
            subprocess.run(rule, check=True, capture_output=True, text=True)
        yield
    finally:
        subprocess.run(["nft", "delete", "table", "inet", table], check=False,
                       capture_output=True)


@pytest.fixture
def udp_blocked_to():
    """Drops UDP to and from one loopback address (where the server announces)."""
    address = "127.0.0.2"
    with nft_dropping(["ip", "daddr", address, "meta", "l4proto", "udp"],
                      ["ip", "saddr", address, "meta", "l4proto", "udp"]):
        yield address

def test_with_udp_blocked_a_default_play_connects_over_tcp(
    start_server, page, media, udp_blocked_to
):
    server = start_server(media_dir=str(media), ip=udp_blocked_to, bind_address=udp_blocked_to)
    sdk_play(page, server, "vod://main.mp4")
    wait_statuses(page, "PLAYING", timeout=30)
    plays_without_freezing(page, 2.0, strict=False)
    pair = selected(page)
    assert pair["local"] == "tcp", pair


#: Holds the page's answer until the test says go (then the browser connects).
HOLD_ANSWER = """
window.__held = false;
window.__go = false;
const original = RTCPeerConnection.prototype.setRemoteDescription;
RTCPeerConnection.prototype.setRemoteDescription = async function () {
  window.__held = true;
  while (!window.__go) await new Promise((resolve) => setTimeout(resolve, 10));
  return original.apply(this, arguments);
};
"""


def test_a_connection_the_other_worker_accepts_is_handed_to_the_peers_worker(
    start_server, page, media
):
    """With the defaults (two workers) the kernel gives the browser's ICE-TCP
    connection to either worker: forced here onto the one without the peer."""
    server = start_server(media_dir=str(media))
    pids = wait_for_workers(server)
    assert len(pids) == 2, pids
    steering = Steering(server, plan=lambda n: 1)  # the session (and its peer) on worker 1
    try:
        page.add_init_script(HOLD_ANSWER)
        sdk_play(page, server, "vod://main.mp4", url=steering.url, transport="TCP")
        page.wait_for_function("window.__held", timeout=15000)
        with paused(pids[1]):  # only worker 2 can accept the connection now
            page.evaluate("window.__go = true")
            time.sleep(1.0)
        wait_statuses(page, "PLAYING")
        plays_without_freezing(page, 2.0, strict=False)
        assert selected(page)["local"] == "tcp"
        assert server.saw("handed to the worker of its peer"), server.log()[-3000:]
    finally:
        steering.close()


@pytest.fixture
def turn():
    from testkit.turn import TurnServer

    server = TurnServer()
    try:
        yield server
    finally:
        server.stop()


def test_the_own_player_plays_relayed_through_turn_over_tcp(start_server, page, media, turn):
    """Chromium told to use nothing but a relay: coturn, reached over TCP, with the
    credential the server's /config.json made for this page load."""
    server = start_server(media_dir=str(media), turn_url=turn.url("tcp"),
                          turn_secret=turn.secret)
    page.goto(f"{server.http_url}/player.html?streamName=vod://main.mp4"
              "&iceTransportPolicy=relay")
    page.wait_for_function("document.getElementById('url').value.startsWith('ws://')")
    page.wait_for_function("window.__statuses !== undefined")
    page.click("#playBtn")
    page.wait_for_function("document.getElementById('status').textContent === 'PLAYING'",
                           timeout=20000)
    page.wait_for_function("document.getElementById('video').videoWidth > 0 "
                           "&& document.getElementById('video').currentTime > 0.3")
    first = video_state(page, "#video")
    time.sleep(2.5)
    later = video_state(page, "#video")
    assert (later["width"], later["height"]) == (640, 360)
    assert later["time"] - first["time"] >= 2.0, (first, later)
    pair = selected(page)
    assert pair["localType"] == "relay" and pair["relay"] == "tcp", pair
    # coturn took the credential the page was given (an expiring user of ours)
    assert re.search(r"user <\d+:wcsvod>: incoming packet ALLOCATE processed, success",
                     turn.log()), turn.log()[-2000:]


def test_transport_tcp_on_a_server_without_an_ice_tcp_port_fails_saying_so(start_server,
                                                                           page, media):
    server = start_server(media_dir=str(media), ice_tcp_port="0")
    sdk_play(page, server, "vod://main.mp4", transport="TCP")
    wait_statuses(page, "FAILED")
    assert page.evaluate("window.infos") == [
        "WebRTC over TCP is off on this server (ice_tcp_port=0)"]


@pytest.fixture
def tcp_blocked_to():
    """Drops TCP to one port of one loopback address; yields a function of the port."""
    address = "127.0.0.3"
    with contextlib.ExitStack() as stack:

        def block(port: int) -> None:
            stack.enter_context(nft_dropping(["ip", "daddr", address, "tcp", "dport",
                                              str(port)]))

        block.address = address  # type: ignore[attr-defined]
        yield block

def test_a_tcp_play_that_cannot_connect_fails_naming_ice_over_tcp(start_server, page, media,
                                                                  tcp_blocked_to):
    address = tcp_blocked_to.address
    server = start_server(media_dir=str(media), ip=address, bind_address=address)
    tcp_blocked_to(server.ports["ice_tcp_port"])
    sdk_play(page, server, "vod://main.mp4", transport="TCP")
    wait_statuses(page, "FAILED", timeout=30)
    [info] = page.evaluate("window.infos")
    assert info.startswith("Failed by ICE timeout: ICE over TCP"), info
    assert "ice_tcp_port" in info


def test_aiortcs_own_sender_plays_over_tcp_too(start_server, page, media):
    """``webrtc_sender=aiortc``: aiortc's per-viewer senders write through the same
    connection (DTLS-SRTP over the framed TCP stream), not the fast path's sink."""
    server = start_server(media_dir=str(media), webrtc_sender="aiortc")
    sdk_play(page, server, "vod://main.mp4", transport="TCP")
    wait_statuses(page, "PLAYING")
    plays_without_freezing(page, 2.0, strict=False)
    assert selected(page)["local"] == "tcp"
