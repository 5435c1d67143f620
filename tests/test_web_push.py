"""``/rest-api/push/`` without a server: fake pushes and registry behind the real
resource tree; find and terminate see only pushes, never a page's plays."""

from __future__ import annotations

from typing import Any

import pytest
from twisted.internet.defer import Deferred, fail, succeed
from twisted.web import resource

from tests.webcalls import call
from wcs.errors import BadRequest, LimitReached, NameTaken, NotFound
from wcs.streams.media_sessions import MediaSession
from wcs.web.push import TERMINATED, PushApi
from wcs.web.rest import Access, RestRoot

URL = "rtmp://relay.example/live"


def push(id: str, name: str = "show", url: str = URL, **fields: Any) -> MediaSession:
    return MediaSession(id, name, False, "RTMP", "rest", rtmp_url=url, **fields)


def viewer(id: str, name: str = "show") -> MediaSession:
    return MediaSession(id, name, False, "WebRTC", "session-1", status="PLAYING")


class Registry:
    def __init__(self, *media: MediaSession) -> None:
        self.queries = self.snapshots = self  # the registry's parts, played by the fake
        self.media = list(media)
        self.stopped: list[tuple[list[str], str]] = []

    def media_sessions(self) -> Deferred[list[MediaSession]]:
        return succeed(list(self.media))

    def stop_media(self, found: list[MediaSession], info: str) -> None:
        self.stopped.append(([media.id for media in found], info))


class Pushes:
    def __init__(self, refusal: Exception | None = None) -> None:
        self.started: list[tuple[str, str]] = []
        self.refusal = refusal

    def start(self, name: str, url: str) -> Deferred[MediaSession]:
        self.started.append((name, url))
        if self.refusal is not None:
            return fail(self.refusal)
        return succeed(push("new", name, url, status="PENDING", created=7, worker="1"))


def tree(registry: Registry, pushes: Pushes | None = None) -> resource.Resource:
    root, rest = resource.Resource(), RestRoot(Access())
    rest.putChild(b"push", PushApi(registry, pushes or Pushes(), Access()))  # type: ignore[arg-type]
    root.putChild(b"rest-api", rest)
    return root


def test_startup_starts_a_push_and_lists_it_as_wcs_does():
    pushes = Pushes()
    answer = call(
        tree(Registry(), pushes), "/rest-api/push/startup", {"streamName": "show", "rtmpUrl": URL}
    )
    assert answer.code == 200 and pushes.started == [("show", URL)]
    assert answer.json() == {
        "mediaSessionId": "new",
        "streamName": "show",
        "rtmpUrl": URL,
        "width": 0,
        "height": 0,
        "muted": False,
        "soundEnabled": False,
        "options": {},
        "status": "PENDING",
        "info": "",
        "createDate": 7,
        "worker": "1",
    }


@pytest.mark.parametrize(
    "body, message",
    [
        ({"rtmpUrl": URL}, "'streamName' is required"),
        ({"streamName": "show"}, "'rtmpUrl' is required"),
        ({"streamName": "show", "rtmpUrl": ""}, "'rtmpUrl' must be a non-empty string"),
        ({"streamName": "show", "rtmpUrl": {"host": "x"}}, "'rtmpUrl' must be a non-empty string"),
        ({"streamName": "show", "rtmpUrl": "rtmp://x/" + "a" * 1024}, "longer than 1024"),
    ],
)
def test_startup_refuses_bad_fields_before_starting_anything(body, message):
    pushes = Pushes()
    answer = call(tree(Registry(), pushes), "/rest-api/push/startup", body)
    assert answer.code == 400 and message in answer.json()["message"]
    assert pushes.started == []


@pytest.mark.parametrize(
    "refusal, status",
    [
        (LimitReached("streams pushed to RTMP", "max_pushes", 4), 429),
        (NameTaken(f"'show' is already pushed to {URL}", "show"), 409),
        (BadRequest("rtmpUrl must be rtmp:// or rtmps://"), 400),
        (NotFound("Stream not found"), 404),
    ],
)
def test_a_refused_push_says_why(refusal, status):
    answer = call(
        tree(Registry(), Pushes(refusal)),
        "/rest-api/push/startup",
        {"streamName": "show", "rtmpUrl": "rtmp://x/y"},
    )
    assert answer.code == status and answer.json()["message"] == refusal.info
    if status == 429:
        assert "max_pushes=4" in answer.json()["message"]


def test_find_matches_every_field_given_among_pushes_only():
    registry = Registry(
        viewer("v1"), push("a"), push("b", url="rtmp://other/live"), push("c", name="news")
    )
    find = "/rest-api/push/find"
    assert [
        m["mediaSessionId"] for m in call(tree(registry), find, {"streamName": "show"}).json()
    ] == ["a", "b"]
    assert [m["mediaSessionId"] for m in call(tree(registry), find, {"rtmpUrl": URL}).json()] == [
        "a",
        "c",
    ]
    both = call(tree(registry), find, {"streamName": "show", "rtmpUrl": URL}).json()
    assert [m["mediaSessionId"] for m in both] == ["a"]
    mine = call(tree(registry), find, {"mediaSessionId": "v1"})  # a play, not a push
    assert mine.code == 404 and mine.json()["message"] == "no such push"


def test_find_and_terminate_need_a_criterion():
    registry = Registry(push("a"))
    for what in ("find", "terminate"):
        answer = call(tree(registry), f"/rest-api/push/{what}", {"status": "PENDING"})
        assert answer.code == 400
        assert answer.json()["message"] == f"give mediaSessionId, streamName or rtmpUrl to {what}"
    assert registry.stopped == []


def test_find_all_lists_pushes_and_is_404_without_any():
    registry = Registry(viewer("v1"), push("a"))
    answer = call(tree(registry), "/rest-api/push/find_all", method=b"GET")
    assert answer.code == 200 and [m["mediaSessionId"] for m in answer.json()] == ["a"]
    empty = call(tree(Registry(viewer("v1"))), "/rest-api/push/find_all")
    assert empty.code == 404 and empty.json()["message"] == "no pushes"


def test_terminate_stops_the_named_pushes_and_never_the_stream_s_viewers():
    registry = Registry(viewer("v1"), push("a"), push("b", url="rtmp://other/live"))
    answer = call(tree(registry), "/rest-api/push/terminate", {"streamName": "show"})
    assert answer.code == 200 and [m["mediaSessionId"] for m in answer.json()] == ["a", "b"]
    assert registry.stopped == [(["a", "b"], TERMINATED)]
    assert TERMINATED == "Stopped by rest /terminate"
    missing = call(tree(registry), "/rest-api/push/terminate", {"mediaSessionId": "v1"})
    assert missing.code == 404 and len(registry.stopped) == 1
