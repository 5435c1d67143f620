"""Bad names and bad files: a clear FAILED, the session and the server carry on."""

from __future__ import annotations

import os

import pytest

from testkit.harness import RawWebSocket
from testkit.pages import open_player, wait_status


def test_missing_file_shows_file_not_found(start_server, page, media):
    server = start_server(media_dir=str(media))
    open_player(page, server, "vod://absent.mp4")
    statuses = wait_status(page, "FAILED")
    assert statuses[0] == "ESTABLISHED"
    assert page.inner_text("#info") == "File not found"
    assert "DISCONNECTED" not in page.evaluate("window.__statuses")


def test_path_escape_shows_failed(start_server, page, media):
    server = start_server(media_dir=str(media))
    open_player(page, server, "vod://../../etc/passwd")
    wait_status(page, "FAILED")
    assert page.inner_text("#info") == "Invalid stream name: '..' is not allowed"


@pytest.fixture
def escape_media(media, tmp_path):
    """The test media plus a symlink that points outside the media folder."""
    folder = tmp_path / "escape-media"
    folder.mkdir()
    (folder / "ok.mp4").write_bytes((media / "main.mp4").read_bytes())
    os.symlink("ok.mp4", folder / "inside-link.mp4")  # stays inside: allowed
    outside = tmp_path / "secret.mp4"
    outside.write_bytes((media / "main.mp4").read_bytes())
    os.symlink(outside, folder / "link-out.mp4")
    os.symlink(tmp_path, folder / "dir-out")
    return folder


NAMES = [
    ("vod://absent.mp4", "File not found"),
    ("vod:///etc/passwd", "Invalid stream name: absolute paths are not allowed"),
    ("vod://sub/../../etc/passwd", "Invalid stream name: '..' is not allowed"),
    ("vod://..\\..\\etc\\passwd", "Invalid stream name: '..' is not allowed"),
    ("vod://a\x00b.mp4", "Invalid stream name: control characters are not allowed"),
    ("vod://%2e%2e/%2e%2e/etc/passwd", "File not found"),
    ("vod://link-out.mp4", "Invalid stream name: it leads outside the media folder"),
    ("vod://dir-out/secret.mp4", "Invalid stream name: it leads outside the media folder"),
    ("vod://", "Invalid stream name: no file name"),
    ("vod://" + "a" * 1100, "'name' is longer than 1024 characters"),
    ("vod://" + "a/" * 300 + "x.mp4", "File not found"),
    ("rtsp://camera/stream", "Unsupported stream scheme 'rtsp'"),
    ("plain-name", "Stream not found"),
]


def test_bad_names_each_get_their_own_info(start_server, escape_media):
    server = start_server(media_dir=str(escape_media))
    client = RawWebSocket(server.ws_url)
    client.send_json("connection", {"appKey": "defaultApp"})
    assert client.receive_json()["message"] == "getUserData"
    for index, (name, info) in enumerate(NAMES):
        client.send_json("playStream", {"mediaSessionId": f"m{index}", "name": name,
                                        "mediaProvider": "WebRTC", "sdp": "v=0\r\n"})
        reply = client.receive_json()
        assert reply["message"] == "notifyStreamStatusEvent", name
        assert reply["data"][0]["mediaSessionId"] == f"m{index}"
        assert reply["data"][0]["status"] == "FAILED", name
        assert reply["data"][0]["info"] == info, name
    # a good name still works on the same session after all that
    for good in ("vod://ok.mp4", "vod://inside-link.mp4"):
        client.send_json("availableStream", {"mediaSessionId": "ok", "name": good})
        assert client.receive_json()["data"][0]["status"] == "true", good
    client.close()


def test_wrong_formats(start_server, media, tmp_path):
    import subprocess

    folder = tmp_path / "formats"
    folder.mkdir()
    (folder / "text.mp4").write_text("not a video\n")
    subprocess.run(["ffmpeg", "-loglevel", "error", "-f", "lavfi", "-i",
                    "testsrc2=size=320x240:rate=25", "-t", "2", "-c:v", "libx264",
                    str(folder / "video.mkv")], check=True)
    subprocess.run(["ffmpeg", "-loglevel", "error", "-f", "lavfi", "-i",
                    "testsrc2=size=320x240:rate=25", "-t", "2", "-c:v", "mpeg4",
                    str(folder / "mpeg4.mp4")], check=True)
    subprocess.run(["ffmpeg", "-loglevel", "error", "-f", "lavfi", "-i",
                    "sine=frequency=440", "-t", "2", "-c:a", "libopus",
                    str(folder / "opus.mp4")], check=True)
    whole = (media / "main.mp4").read_bytes()
    (folder / "cut-header.mp4").write_bytes(whole[:2000])
    (folder / "cut-tail.mp4").write_bytes(whole[:len(whole) // 2])
    (folder / "empty.mp4").write_bytes(b"")
    server = start_server(media_dir=str(folder))
    client = RawWebSocket(server.ws_url)
    client.send_json("connection", {})
    client.receive_json()
    expected = {
        "text.mp4": "File has wrong format: not an MP4 file",
        "video.mkv": "File has wrong format: not an MP4 file",
        "mpeg4.mp4": "File has wrong format: video codec mpeg4 is not H.264",
        "opus.mp4": "File has wrong format: audio codec opus is not AAC",
        "cut-header.mp4": "File has wrong format: file is truncated (moov box ends past",
        "cut-tail.mp4": "File has wrong format: file is truncated (mdat box ends past",
        "empty.mp4": "File has wrong format: not an MP4 file",
    }
    for name, info in expected.items():
        client.send_json("playStream", {"mediaSessionId": name, "name": f"vod://{name}",
                                        "sdp": "v=0\r\n"})
        reply = client.receive_json()["data"][0]
        assert reply["status"] == "FAILED", name
        assert reply["info"].startswith(info), (name, reply["info"])
    client.close()
    assert server.process.poll() is None
