"""End to end: streams sent on to a real RTMP server (ffmpeg listening on
loopback), as REST ``/push/*`` and the SDK's republishing demo ask.

What arrives is read back with PyAV: the H.264 is the file's own samples,
byte for byte, audio is there, and the timestamps move steadily."""

from __future__ import annotations

import re
import socket
import threading
import time
from pathlib import Path

import av

from testkit.rest_client import call
from testkit.rtmp_receiver import FfmpegReceiver, TlsFront
from wcs.tls import self_signed


def file_samples(path: Path) -> tuple[list[bytes], list[bytes]]:
    """The file's video and audio samples as stored (AVCC H.264, raw AAC)."""
    video, audio = [], []
    with av.open(str(path)) as container:
        for packet in container.demux():
            if packet.size:
                (video if packet.stream.type == "video" else audio).append(bytes(packet))
    return video, audio


def received(path: Path) -> tuple[list[tuple[int, bytes, bool]], list[tuple[int, bytes]]]:
    """What the receiver wrote: (ms, data, keyframe) per video packet, (ms, data) per audio."""
    video, audio = [], []
    with av.open(str(path)) as container:
        for packet in container.demux():
            if not packet.size:
                continue
            ms = int(packet.pts * packet.time_base * 1000)
            if packet.stream.type == "video":
                video.append((ms, bytes(packet), packet.is_keyframe))
            else:
                audio.append((ms, bytes(packet)))
    return video, audio


def assert_the_file_as_it_is(got: Path, source: Path, seconds: float) -> None:
    """``got`` holds ``source``'s samples byte for byte from a keyframe on, at its
    rate, for at least ``seconds``, its audio with them."""
    video, audio = received(got)
    stored_video, stored_audio = file_samples(source)
    assert video[0][2], "the push starts on a keyframe"
    first = stored_video.index(video[0][1])
    for index, (_, data, _) in enumerate(video):  # the file's samples, byte for byte
        assert data == stored_video[(first + index) % len(stored_video)], index
    stamps = [ms for ms, _, _ in video]
    assert stamps[0] == 0 and stamps[-1] >= seconds * 1000, stamps[-1]
    with av.open(str(source)) as container:
        frame_ms = 1000 / float(container.streams.video[0].average_rate)
    steps = {b - a for a, b in zip(stamps, stamps[1:])}
    assert all(abs(step - frame_ms) <= 1 for step in steps), steps  # the file's rate, steadily
    assert len(audio) > seconds * 40 and {data for _, data in audio} <= set(stored_audio)
    audio_stamps = [ms for ms, _ in audio]
    assert audio_stamps == sorted(audio_stamps)
    assert abs(audio_stamps[-1] - stamps[-1]) < 500


def find_push(server, media_id: str) -> dict:
    status, found, _ = call(server.http_url, "/rest-api/push/find", {"mediaSessionId": media_id})
    assert status == 200, found
    return found[0]


def wait_push(server, media_id: str, wanted: str, timeout: float = 15.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        push = find_push(server, media_id)
        if push["status"] == wanted:
            return push
        time.sleep(0.1)
    raise AssertionError(f"push never {wanted}: {push}")


def test_a_broadcast_goes_to_an_rtmp_server_as_it_is(start_server, media, tmp_path):
    receiver = FfmpegReceiver(tmp_path / "got.flv").start()
    try:
        server = start_server(media_dir=str(media))
        assert call(server.http_url, "/rest-api/vod/startup",
                    {"uri": "vod-live://live.mp4", "localStreamName": "show"})[0] == 200
        status, push, _ = call(server.http_url, "/rest-api/push/startup",
                               {"streamName": "show", "rtmpUrl": receiver.url})
        assert status == 200, push
        assert push["streamName"] == "show" and push["rtmpUrl"] == receiver.url
        assert push["width"] > 0 and push["soundEnabled"] is True
        status, again, _ = call(server.http_url, "/rest-api/push/startup",
                                {"streamName": "show", "rtmpUrl": receiver.url})
        assert status == 409 and "already pushed" in again["message"]
        wait_push(server, push["mediaSessionId"], "PUBLISHING")
        _, listed, _ = call(server.http_url, "/rest-api/push/find_all")
        assert [item["mediaSessionId"] for item in listed] == [push["mediaSessionId"]]
        time.sleep(12)
        status, stopped, _ = call(server.http_url, "/rest-api/push/terminate",
                                  {"mediaSessionId": push["mediaSessionId"]})
        assert status == 200 and stopped[0]["mediaSessionId"] == push["mediaSessionId"]
        ended = find_push(server, push["mediaSessionId"])  # listed, with how it ended
        assert (ended["status"], ended["info"]) == ("STOPPED", "Stopped by rest /terminate")
        assert receiver.finished() == 0, receiver.log()
    finally:
        receiver.kill()
    assert_the_file_as_it_is(tmp_path / "got.flv", media / "live.mp4", seconds=10)


def test_pushes_that_cannot_be_made_are_refused_saying_why(start_server, media):
    server = start_server(media_dir=str(media), max_pushes="1")
    cases = [
        ({"rtmpUrl": "rtmp://127.0.0.1/live"}, 400, "'streamName' is required"),
        ({"streamName": "show"}, 400, "'rtmpUrl' is required"),
        ({"streamName": "show", "rtmpUrl": "http://127.0.0.1/live"}, 400, "only rtmp://"),
        ({"streamName": "show", "rtmpUrl": "rtmpt://127.0.0.1/live"}, 400, "only rtmp://"),
        ({"streamName": "show", "rtmpUrl": "rtmp://127.0.0.1"}, 400, "application"),
        ({"streamName": "show", "rtmpUrl": "rtmp://127.0.0.1:99999/live"}, 400, "port"),
        ({"streamName": "nothing-runs", "rtmpUrl": "rtmp://127.0.0.1/live"}, 404, ""),
    ]
    for body, expected, why in cases:
        status, answer, _ = call(server.http_url, "/rest-api/push/startup", body)
        assert status == expected and why in answer["message"], (body, answer)
    assert call(server.http_url, "/rest-api/push/find_all")[0] == 404
    assert call(server.http_url, "/rest-api/push/find", {})[0] == 400
    assert call(server.http_url, "/rest-api/vod/startup",
                {"uri": "vod-live://live.mp4", "localStreamName": "show"})[0] == 200
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))  # nothing listens there: the push retries, then fails
    port = closed.getsockname()[1]
    first = call(server.http_url, "/rest-api/push/startup",
                 {"streamName": "show", "rtmpUrl": f"rtmp://127.0.0.1:{port}/live"})
    assert first[0] == 200
    status, answer, _ = call(server.http_url, "/rest-api/push/startup",
                             {"streamName": "show", "rtmpUrl": f"rtmp://127.0.0.1:{port}/b"})
    assert status == 429 and "max_pushes=1" in answer["message"]
    closed.close()


def not_rtmp_server() -> tuple[int, threading.Thread]:
    """A TCP server that answers anything with an HTTP error and closes."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(4)

    def serve() -> None:
        listener.settimeout(20)
        try:
            connection, _ = listener.accept()
        except OSError:
            return
        with connection:
            connection.recv(2000)
            connection.sendall(b"HTTP/1.1 400 Bad Request\r\n\r\n" + b"x" * 4000)
        listener.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return listener.getsockname()[1], thread


def test_a_server_that_is_not_rtmp_or_goes_away_ends_the_push(start_server, media, tmp_path):
    server = start_server(media_dir=str(media), rtmp_push_retries="1")
    assert call(server.http_url, "/rest-api/vod/startup",
                {"uri": "vod-live://live.mp4", "localStreamName": "show"})[0] == 200
    port, serving = not_rtmp_server()
    _, push, _ = call(server.http_url, "/rest-api/push/startup",
                      {"streamName": "show", "rtmpUrl": f"rtmp://127.0.0.1:{port}/live"})
    failed = wait_push(server, push["mediaSessionId"], "FAILED", timeout=20)
    assert failed["info"].startswith("Failed by RTMP writer error: ")
    assert server.saw("not an RTMP server")
    serving.join(5)

    receiver = FfmpegReceiver(tmp_path / "cut.flv").start()
    _, push, _ = call(server.http_url, "/rest-api/push/startup",
                      {"streamName": "show", "rtmpUrl": receiver.url})
    wait_push(server, push["mediaSessionId"], "PUBLISHING")
    time.sleep(2)
    receiver.kill()  # the receiver goes away mid-push: one try again, then the end
    failed = wait_push(server, push["mediaSessionId"], "FAILED", timeout=20)
    assert failed["info"].startswith("Failed by RTMP writer error: ")
    log = server.log()
    assert "trying again in 1 s (1 of 1)" in log, [line for line in log.splitlines()
                                                   if "push" in line]
    assert "ended: FAILED" in log
    # the broadcast itself plays on, for the next push or viewer
    assert call(server.http_url, "/rest-api/vod/find",
                {"localStreamName": "show"})[0] == 200


def test_rtmps_goes_over_tls_to_a_server_the_ca_file_vouches_for(start_server, media,
                                                                 tmp_path):
    trusted = TlsFront(FfmpegReceiver(tmp_path / "tls.flv"),
                       *self_signed(tmp_path / "trusted")).start()
    stranger = TlsFront(FfmpegReceiver(tmp_path / "stranger.flv"),
                        *self_signed(tmp_path / "stranger")).start()
    try:
        server = start_server(media_dir=str(media),
                              rtmp_push_ca_file=str(trusted.cert))
        assert call(server.http_url, "/rest-api/vod/startup",
                    {"uri": "vod-live://live.mp4", "localStreamName": "show"})[0] == 200
        status, push, _ = call(server.http_url, "/rest-api/push/startup",
                               {"streamName": "show", "rtmpUrl": trusted.url})
        assert status == 200 and push["rtmpUrl"] == trusted.url, push
        status, refused, _ = call(server.http_url, "/rest-api/push/startup",
                                  {"streamName": "show", "rtmpUrl": stranger.url})
        assert status == 200, refused
        wait_push(server, push["mediaSessionId"], "PUBLISHING")
        failed = wait_push(server, refused["mediaSessionId"], "FAILED")
        # a certificate nobody vouches for is refused at once, and not tried again
        assert failed["info"] == ("Failed by RTMP writer error: TLS: certificate verify "
                                  "failed"), failed
        assert "trying again" not in server.log()
        time.sleep(6)  # (the push begins at the next keyframe: 2 s GOPs)
        assert call(server.http_url, "/rest-api/push/terminate",
                    {"mediaSessionId": push["mediaSessionId"]})[0] == 200
        assert trusted.receiver.finished() == 0, trusted.receiver.log()
        # everything went through the TLS front (ffmpeg itself listens on plain RTMP)
        deadline = time.monotonic() + 10  # stunnel says so once the connection closes
        while not (relayed := re.search(r"(\d+) byte\(s\) sent to socket", trusted.log())) \
                and time.monotonic() < deadline:
            time.sleep(0.1)
        assert relayed and int(relayed[1]) > 50_000, trusted.log()
    finally:
        trusted.kill()
        stranger.kill()
    assert_the_file_as_it_is(tmp_path / "tls.flv", media / "live.mp4", seconds=3)


REPUBLISHING = ("/client2/examples/demo/streaming/webrtc-as-rtmp-republishing/"
                "webrtc-as-rtmp-republishing.html")


def test_the_sdk_s_republishing_demo_reaches_an_rtmp_server(start_server, media, page,
                                                           tmp_path):
    from testkit.pages import wait_status

    receiver = FfmpegReceiver(tmp_path / "camera.flv", key="rtmp_camera").start()
    try:
        server = start_server(media_dir=str(media))
        page.goto(server.http_url + REPUBLISHING)
        page.fill("#url", server.ws_url)
        page.fill("#rtmpUrl", receiver.url)
        page.fill("#streamName", "camera")
        page.click("#publishBtn")
        wait_status(page, "PUBLISHING")
        _, found, _ = call(server.http_url, "/rest-api/push/find", {"streamName": "camera"})
        assert isinstance(found, list) and found, (found, receiver.log())  # (what ffmpeg said)
        wait_push(server, found[0]["mediaSessionId"], "PUBLISHING")
        assert found[0]["rtmpUrl"] == receiver.url
        assert page.text_content("#player") == f"{receiver.url}/rtmp_camera"
        time.sleep(7.5)  # (a loaded machine's camera may start a second late)
        page.click("#publishBtn")  # stop: the push ends with the publication
        wait_status(page, "UNPUBLISHED")
        assert receiver.finished() == 0, receiver.log()
        ended = find_push(server, found[0]["mediaSessionId"])
        assert ended["status"] == "STOPPED", ended
    finally:
        receiver.kill()
    video, audio = received(tmp_path / "camera.flv")
    assert video[0][2] and video[-1][0] - video[0][0] >= 5_000
    stamps = [ms for ms, _, _ in video]
    assert stamps == sorted(stamps)
    gaps = [b - a for a, b in zip(stamps, stamps[1:])]
    assert max(gaps) < 500, max(gaps)  # a camera's frames, no stall
    assert len(audio) > 5 * 40  # AAC made from the page's Opus
    decoded = 0
    with av.open(str(tmp_path / "camera.flv")) as container:
        stream = container.streams.video[0]
        for frame in container.decode(stream):
            assert frame.width > 0
            decoded += 1
    assert decoded >= len(video) - 2


def test_a_push_keeps_its_broadcast_running_like_a_viewer(start_server, media, tmp_path):
    """A broadcast a push started (no REST startup, no viewer) runs while the
    push does, and ends by the usual timeout once the push is terminated."""
    receiver = FfmpegReceiver(tmp_path / "loop.flv", key="rtmp_vod-live___loop.mp4").start()
    try:
        server = start_server(media_dir=str(media), vod_live_loop="true",
                              vod_stream_timeout="1000")
        status, push, _ = call(server.http_url, "/rest-api/push/startup",
                               {"streamName": "vod-live://loop.mp4", "rtmpUrl": receiver.url})
        assert status == 200, push
        wait_push(server, push["mediaSessionId"], "PUBLISHING")
        time.sleep(3)  # three times the timeout: still running, the push its one viewer
        _, found, _ = call(server.http_url, "/rest-api/vod/find",
                           {"uri": "vod-live://loop.mp4"})
        assert found[0]["viewers"] == 1, found
        call(server.http_url, "/rest-api/push/terminate",
             {"mediaSessionId": push["mediaSessionId"]})
        deadline = time.monotonic() + 10
        while call(server.http_url, "/rest-api/vod/find", {"uri": "vod-live://loop.mp4"},
                   check=False)[0] != 404:
            assert time.monotonic() < deadline, "the broadcast outlived its timeout"
            time.sleep(0.2)
        assert receiver.finished() == 0, receiver.log()
    finally:
        receiver.kill()
