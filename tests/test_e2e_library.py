"""``vod/library`` on the real server: what the console lists, hostile input
refused with a reason, files outside the media folder never listed, changes
seen, and every listed uri playable."""

from __future__ import annotations

import shutil
import time

from testkit.rest_client import call
from testkit.rtc_client import play, run

LIBRARY = "/rest-api/vod/library"


def settled(server, body: dict | None = None, seconds: float = 20) -> dict:
    """The listing once no file is still being checked."""
    deadline = time.monotonic() + seconds
    while True:
        status, page, _ = call(server.http_url, LIBRARY, body or {"limit": 1000})
        assert status == 200, page
        if not page["checking"]:
            return page
        assert time.monotonic() < deadline, page
        time.sleep(0.2)


def test_lists_pages_filters_and_refuses_bad_input(start_server, media, tmp_path):
    folder = tmp_path / "media"
    shutil.copytree(media, folder)
    outside = tmp_path / "secret.mp4"
    shutil.copy(media / "main.mp4", outside)
    (folder / "escape.mp4").symlink_to(outside)
    server = start_server(media_dir=str(folder))
    page = settled(server)
    names = {item["name"]: item for item in page["items"]}
    assert "escape.mp4" not in names and page["files"] == len(names) == page["total"]
    assert names["sub/nested.mp4"]["uri"] == "vod://sub/nested.mp4"
    assert names["bframes.mp4"]["verdict"] == "plays with re-encode"
    assert names["not-an-mp4.mp4"]["verdict"] == "will not play"
    assert all(str(folder) not in str(item) for item in page["items"])  # no server paths
    status, got, _ = call(server.http_url, LIBRARY, method="GET")
    assert status == 200 and got["total"] == page["total"]
    status, got, _ = call(server.http_url, LIBRARY, {"offset": 2, "limit": 3})
    assert [i["name"] for i in got["items"]] == [i["name"] for i in page["items"][2:5]]
    status, got, _ = call(server.http_url, LIBRARY, {"contains": "NEST"})
    assert [i["name"] for i in got["items"]] == ["sub/nested.mp4"]
    for body, word in (({"limit": 5000}, "limit"), ({"offset": -1}, "offset"),
                       ({"limit": "10"}, "limit"), ({"contains": 5}, "contains"),
                       ({"contains": "x" * 300}, "contains"), ({"limit": True}, "limit")):
        status, refused, _ = call(server.http_url, LIBRARY, body)
        assert status == 400 and word in refused["message"], (body, refused)
    status, refused, _ = call(server.http_url, LIBRARY, raw=b"[1, 2", check=False)
    assert status == 400
    # a file added is listed (and checked) within a few seconds, one removed goes
    shutil.copy(media / "loop.mp4", folder / "sub" / "added.mp4")
    (folder / "baseline.mp4").unlink()
    deadline = time.monotonic() + 10
    while True:
        names = {i["name"]: i for i in settled(server)["items"]}
        if "sub/added.mp4" in names and "baseline.mp4" not in names:
            break
        assert time.monotonic() < deadline, sorted(names)
        time.sleep(0.5)
    assert names["sub/added.mp4"]["verdict"] == "plays as is"
    got = run(play(server.ws_url, names["sub/added.mp4"]["uri"], stop_after=1, timeout=20))
    assert got.statuses[-2:] == ["PLAYING", "STOPPED"] and got.video


def test_the_rest_key_guards_it(start_server, media):
    key = "library-key-0123456789abcdef"
    server = start_server(media_dir=str(media), rest_api_key=key)
    assert call(server.http_url, LIBRARY, {})[0] == 401
    status, page, _ = call(server.http_url, LIBRARY, {},
                           headers={"Authorization": f"Bearer {key}"})
    assert status == 200 and page["files"] > 5
