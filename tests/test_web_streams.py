"""``/rest-api/stream/`` without a server: every page's plays and publications
from a fake registry, what find and terminate select, and snapshots."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from twisted.internet.defer import Deferred, fail, succeed
from twisted.web import resource

from tests.webcalls import call
from wcs.errors import NotFound, Unsupported
from wcs.streams.media_sessions import MediaSession
from wcs.web.rest import Access, RestRoot
from wcs.web.streams import TERMINATED, StreamApi

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256))


class Registry:
    """The registry's media-session side, filtering as the real one does."""

    def __init__(self, *media: MediaSession) -> None:
        self.queries = self.snapshots = self  # the registry's parts, played by the fake
        self.media = list(media)
        self.asked: list[tuple[Any, ...]] = []
        self.stopped: list[tuple[list[str], str]] = []
        self.taken: list[tuple[str, ...]] = []
        self.refusal: Exception | None = None

    def media_sessions(self, media_id=None, name=None, published=None) -> Deferred:
        self.asked.append((media_id, name, published))
        return succeed(
            [
                media
                for media in self.media
                if media_id in (None, media.id)
                and name in (None, media.name)
                and published in (None, media.published)
            ]
        )

    def stop_media(self, found: list[MediaSession], info: str) -> None:
        self.stopped.append(([media.id for media in found], info))

    def snapshot(self, name: str) -> Deferred[bytes]:
        self.taken.append(("name", name))
        return fail(self.refusal) if self.refusal else succeed(PNG)

    def media_snapshot(self, media_id: str, name: str | None = None) -> Deferred:
        self.taken.append(("media", media_id, name))
        return fail(self.refusal) if self.refusal else succeed((name or "its-stream", PNG))


def tree(registry: Registry, access: Access | None = None) -> resource.Resource:
    root, rest = resource.Resource(), RestRoot(Access())
    rest.putChild(b"stream", StreamApi(registry, access or Access()))  # type: ignore[arg-type]
    root.putChild(b"rest-api", rest)
    return root


def play(id: str, name: str = "show", **fields: Any) -> MediaSession:
    return MediaSession(id, name, False, "WebRTC", "session-1", **fields)


def publication(id: str, name: str = "live") -> MediaSession:
    return MediaSession(id, name, True, "WebRTC", "session-2", status="PUBLISHING")


def test_find_selects_by_every_field_given():
    registry = Registry(play("p1"), play("p2", "other"), publication("u1"))
    answer = call(tree(registry), "/rest-api/stream/find", {"published": True})
    assert answer.code == 200
    assert [media["mediaSessionId"] for media in answer.json()] == ["u1"]
    assert registry.asked == [(None, None, True)]
    answer = call(tree(registry), "/rest-api/stream/find", {"name": "show", "published": False})
    assert [media["mediaSessionId"] for media in answer.json()] == ["p1"]
    answer = call(tree(registry), "/rest-api/stream/find", {"mediaSessionId": "p2"})
    assert [media["name"] for media in answer.json()] == ["other"]
    assert registry.asked[-1] == ("p2", None, None)


def test_a_media_session_is_listed_as_wcs_lists_it():
    media = play(
        "p1",
        has_audio=True,
        has_video=True,
        width=640,
        height=360,
        created=5,
        status="PLAYING",
        worker="2",
    )
    [listed] = call(tree(Registry(media)), "/rest-api/stream/find_all", method=b"GET").json()
    assert listed == {
        "mediaSessionId": "p1",
        "name": "show",
        "published": False,
        "status": "PLAYING",
        "info": "",
        "mediaProvider": "WebRTC",
        "sessionId": "session-1",
        "hasAudio": True,
        "hasVideo": True,
        "record": False,
        "width": 640,
        "height": 360,
        "audioCodec": "opus",
        "videoCodec": "H264",
        "createDate": 5,
        "worker": "2",
    }


@pytest.mark.parametrize(
    "body, message",
    [
        ({}, "give mediaSessionId, name or published to find"),
        ({"published": "yes"}, "'published' must be true or false"),
        ({"published": 1}, "'published' must be true or false"),
        ({"name": ""}, "'name' must be a non-empty string"),
        ({"mediaSessionId": 7}, "'mediaSessionId' must be a non-empty string"),
        ({"name": "n" * 1025}, "'name' is longer than 1024 characters"),
    ],
)
def test_find_refuses_what_names_nothing(body, message):
    registry = Registry(play("p1"))
    answer = call(tree(registry), "/rest-api/stream/find", body)
    assert answer.code == 400 and answer.json()["message"] == message
    assert registry.asked == []


def test_nothing_found_is_404():
    registry = Registry(play("p1"))
    answer = call(tree(registry), "/rest-api/stream/find", {"name": "nobody"})
    assert answer.code == 404 and answer.json()["message"] == "no such stream"
    empty = call(tree(Registry()), "/rest-api/stream/find_all", method=b"GET")
    assert empty.code == 404 and empty.json()["message"] == "no streams"


def test_find_all_lists_every_one_and_checks_a_posted_body():
    registry = Registry(play("p1"), publication("u1"))
    for answer in (
        call(tree(registry), "/rest-api/stream/find_all", method=b"GET"),
        call(tree(registry), "/rest-api/stream/find_all"),
    ):  # the SDK: no body
        assert [media["mediaSessionId"] for media in answer.json()] == ["p1", "u1"]
    bad = call(
        tree(registry),
        "/rest-api/stream/find_all",
        raw=b"[]",
        headers={b"content-type": b"application/json"},
    )
    assert bad.code == 400 and bad.json()["message"] == "body must be a JSON object"


def test_terminate_stops_what_it_names_and_lists_it():
    registry = Registry(play("p1"), play("p2"), publication("u1"))
    answer = call(tree(registry), "/rest-api/stream/terminate", {"mediaSessionId": "p2"})
    assert answer.code == 200 and [media["mediaSessionId"] for media in answer.json()] == ["p2"]
    assert registry.stopped == [(["p2"], TERMINATED)] and TERMINATED == "Stopped by server"
    by_name = call(tree(registry), "/rest-api/stream/terminate", {"name": "show"})
    assert by_name.code == 200 and registry.stopped[-1] == (["p1", "p2"], TERMINATED)


def test_terminate_needs_an_id_or_a_name_not_just_a_kind():
    """``{"published": true}`` alone would stop every publication of the server."""
    registry = Registry(publication("u1"), publication("u2"))
    for body in ({"published": True}, {}, {"published": False}):
        answer = call(tree(registry), "/rest-api/stream/terminate", body)
        assert answer.code == 400
        assert answer.json()["message"] == (
            "give the mediaSessionId (or name) of the stream to terminate"
        )
    missing = call(tree(registry), "/rest-api/stream/terminate", {"mediaSessionId": "zz"})
    assert missing.code == 404
    assert registry.stopped == []


def test_a_snapshot_of_a_stream_by_name_is_its_png_in_base64():
    registry = Registry()
    for body in ({"streamName": "show"}, {"name": "show"}):
        answer = call(tree(registry), "/rest-api/stream/snapshot", body)
        assert answer.code == 200
        assert answer.json() == {
            "streamName": "show",
            "data": base64.b64encode(PNG).decode("ascii"),
        }
    assert registry.taken == [("name", "show"), ("name", "show")]


def test_a_snapshot_of_a_play_asks_for_that_play_s_own_picture():
    registry = Registry()
    answer = call(tree(registry), "/rest-api/stream/snapshot", {"mediaSessionId": "p1"})
    assert answer.code == 200 and answer.json()["streamName"] == "its-stream"
    assert base64.b64decode(answer.json()["data"]) == PNG
    call(tree(registry), "/rest-api/stream/snapshot", {"mediaSessionId": "p1", "name": "show"})
    assert registry.taken == [("media", "p1", None), ("media", "p1", "show")]


@pytest.mark.parametrize(
    "refusal, status",
    [
        (Unsupported("No picture: the stream has no video"), 400),
        (NotFound("Stream not found"), 404),
    ],
)
def test_a_snapshot_refused_says_why(refusal, status):
    registry = Registry()
    registry.refusal = refusal
    answer = call(tree(registry), "/rest-api/stream/snapshot", {"streamName": "show"})
    assert answer.code == status and answer.json()["message"] == refusal.info


@pytest.mark.parametrize("body", [{}, {"streamName": ""}, {"published": True}])
def test_a_snapshot_needs_a_name(body):
    registry = Registry()
    answer = call(tree(registry), "/rest-api/stream/snapshot", body)
    assert answer.code == 400 and "'streamName'" in answer.json()["message"]
    assert registry.taken == []


def test_a_bug_behind_an_operation_is_a_500_not_a_hang():
    class Broken(Registry):
        def media_sessions(self, *args: Any) -> Deferred:
            raise AttributeError("oops")

    answer = call(tree(Broken()), "/rest-api/stream/find_all", method=b"GET")
    assert answer.finished and answer.code == 500
    assert answer.json()["message"] == "internal error: AttributeError"


def test_only_the_key_s_holder_may_terminate():
    registry = Registry(play("p1"))
    answer = call(
        tree(registry, Access(api_key="k3y")),
        "/rest-api/stream/terminate",
        {"mediaSessionId": "p1"},
        peer="192.0.2.7",
        headers={b"authorization": b"Bearer wrong"},
    )
    assert answer.code == 401 and registry.stopped == []
    answer = call(
        tree(registry, Access(api_key="k3y")),
        "/rest-api/stream/terminate",
        {"mediaSessionId": "p1"},
        peer="192.0.2.7",
        headers={b"authorization": b"Bearer k3y"},
    )
    assert answer.code == 200 and registry.stopped == [(["p1"], TERMINATED)]
