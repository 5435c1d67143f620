"""``/rest-api/vod/`` without a server: a fake registry behind a real resource
tree, so each test sees what a caller would (status, JSON body, what the
registry was asked), hostile bodies included."""

from __future__ import annotations

import time
from types import SimpleNamespace
from typing import Any

import pytest
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.error import ConnectionDone
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from twisted.web import resource

from tests.webcalls import call
from wcs.access import tokens
from wcs.access.gate import Gate
from wcs.cluster.store import Entry, Load
from wcs.errors import LimitReached, NameTaken, NotFound, Unsupported
from wcs.web.rest import MAX_BODY, Access, RestRoot
from wcs.web.vod import MAX_PAGE, MAX_TOKEN_LIFETIME, VodApi

STARTUP, FIND = "/rest-api/vod/startup", "/rest-api/vod/find"
FIND_ALL, TERMINATE = "/rest-api/vod/find_all", "/rest-api/vod/terminate"
LIBRARY = "/rest-api/vod/library"


class Registry:
    """The registry's VOD side: entries it holds, loads, startups and terminations."""

    def __init__(self, *entries: Entry, loads: tuple[Load, ...] = ()) -> None:
        self.queries = self.snapshots = self  # the registry's parts, played by the fake
        self.held = list(entries)
        self.held_loads = list(loads)
        self.asked: list[dict[str, Any]] = []
        self.started: list[tuple[str, str, bool | None]] = []
        self.terminated: list[tuple[list[str], str]] = []
        self.refusal: Exception | None = None
        self.pending: Deferred | None = None

    def entries(self, *, name=None, uri=None, stream_id=None) -> Deferred[list[Entry]]:
        self.asked.append({"name": name, "uri": uri, "stream_id": stream_id})
        return succeed(
            [
                entry
                for entry in self.held
                if name in (None, entry.name)
                and uri in (None, entry.uri)
                and stream_id in (None, entry.id)
            ]
        )

    def loads(self) -> Deferred[list[Load]]:
        return succeed(list(self.held_loads))

    def startup(self, uri: str | None, name: str, loop: bool | None = None,
                playlist: list[str] | None = None) -> Deferred:
        self.started.append((uri, name, loop) if playlist is None else (playlist, name, loop))
        uri = uri or f"vod-live://{name}"
        if self.refusal is not None:
            return fail(self.refusal)
        entry = Entry(name, uri=uri, loop=bool(loop), persistent=True, has_video=True)
        self.held.append(entry)
        stream = SimpleNamespace(id=entry.id)
        if self.pending is not None:
            return self.pending.addCallback(lambda _: stream)
        return succeed(stream)

    def terminate(self, entries: list[Entry], info: str) -> Deferred[list[Entry]]:
        self.terminated.append(([entry.id for entry in entries], info))
        return succeed(entries)


class Library:
    def __init__(self) -> None:
        self.pages: list[tuple[int, int, str]] = []

    def listing(self) -> Deferred[Library]:
        return succeed(self)

    def page(self, offset: int, limit: int, contains: str) -> dict[str, Any]:
        self.pages.append((offset, limit, contains))
        return {"total": 1, "items": [{"name": "a.mp4"}]}


def tree(registry: Registry, access: Access | None = None, **kwargs: Any) -> resource.Resource:
    root, rest = resource.Resource(), RestRoot(access or Access())
    rest.putChild(b"vod", VodApi(registry, access or Access(), **kwargs))  # type: ignore[arg-type]
    root.putChild(b"rest-api", rest)
    return root


def show(**fields: Any) -> Entry:
    return Entry(
        "show", uri="vod-live://a.mp4", has_video=True, has_audio=True, bitrate=800_000, **fields
    )


def test_startup_hands_its_fields_to_the_registry_and_lists_the_new_stream():
    registry = Registry()
    answer = call(tree(registry), STARTUP, {"uri": "vod-live://a.mp4", "localStreamName": "x"})
    assert answer.code == 200, answer.body
    assert answer.header(b"content-type") == b"application/json; charset=utf-8"
    assert registry.started == [("vod-live://a.mp4", "x", None)]
    listed = answer.json()
    assert listed["localStreamName"] == "x" and listed["uri"] == "vod-live://a.mp4"
    assert listed["localMediaSessionId"] == registry.held[0].id
    assert listed["status"] == "PROCESSED_LOCAL" and listed["loop"] is False
    assert listed["viewers"] == 0 and listed["hlsViewers"] == 0 and "playToken" not in listed
    assert registry.asked == [{"name": None, "uri": None, "stream_id": registry.held[0].id}]
    looped = call(
        tree(registry), STARTUP, {"uri": "vod-live://b.mp4", "localStreamName": "y", "loop": True}
    )
    assert looped.code == 200 and looped.json()["loop"] is True
    assert registry.started[-1] == ("vod-live://b.mp4", "y", True)
    # a playlist channel: the list goes to the registry instead of a uri
    listed = call(tree(registry), STARTUP, {"playlist": ["a.mp4", "b.mp4"], "localStreamName": "z"})
    assert listed.code == 200 and registry.started[-1] == (["a.mp4", "b.mp4"], "z", None)


@pytest.mark.parametrize(
    "body, message",
    [
        ({"localStreamName": "x"}, "'uri' is required"),
        ({"uri": "vod-live://a.mp4"}, "'localStreamName' is required"),
        (
            {"uri": "vod-live://a.mp4", "localStreamName": 5},
            "'localStreamName' must be a non-empty",
        ),
        ({"uri": "", "localStreamName": "x"}, "'uri' must be a non-empty string"),
        ({"uri": ["vod-live://a.mp4"], "localStreamName": "x"}, "'uri' must be a non-empty string"),
        (
            {"uri": "vod-live://" + "a" * 1100, "localStreamName": "x"},
            "longer than 1024 characters",
        ),
        (
            {"uri": "vod-live://a.mp4", "localStreamName": "x", "loop": "yes"},
            "'loop' must be true or false",
        ),
        (
            {"uri": "vod-live://a.mp4", "localStreamName": "x", "loop": 1},
            "'loop' must be true or false",
        ),
        (
            {"uri": "vod-live://a.mp4", "localStreamName": "x", "playTokenLifetime": 60},
            "no play_token_secret is set",
        ),
    ],
)
def test_startup_refuses_bad_fields_before_asking_the_registry(body, message):
    registry = Registry()
    answer = call(tree(registry), STARTUP, body)
    assert answer.code == 400
    assert answer.json()["status"] == 400 and answer.json()["error"] == "Bad Request"
    assert message in answer.json()["message"]
    assert registry.started == []


@pytest.mark.parametrize(
    "raw, kind, status, message",
    [
        (b"{not json", b"application/json", 400, "body is not valid JSON"),
        (b"\xff\xfe{}", b"application/json", 400, "body is not valid JSON"),
        (b"[1, 2]", b"application/json", 400, "body must be a JSON object"),
        (b'"x"', b"application/json", 400, "body must be a JSON object"),
        (b"", b"application/json", 400, "a JSON object body is required"),
        (b"  \n", b"application/json", 400, "a JSON object body is required"),
        (
            b'{"a": ' + b"[" * 30000 + b"]" * 30000 + b"}",
            b"application/json",
            400,
            "body is not valid JSON",
        ),  # nested past the parser's recursion limit
        (b"x" * (MAX_BODY + 1), b"application/json", 400, f"body larger than {MAX_BODY} bytes"),
        (b'{"uri": "vod-live://a.mp4"}', b"text/plain", 415, "not text/plain"),
        (b"uri=vod-live://a.mp4", b"application/x-www-form-urlencoded", 415, "Content-Type"),
    ],
)
def test_hostile_bodies_are_refused_with_a_json_answer_naming_the_problem(
    raw, kind, status, message
):
    registry = Registry()
    answer = call(tree(registry), STARTUP, raw=raw, headers={b"content-type": kind})
    assert answer.code == status
    assert answer.json()["status"] == status and message in answer.json()["message"]
    assert registry.started == []


@pytest.mark.parametrize(
    "refusal, status",
    [
        (NameTaken("a stream named 'x' already exists", "x"), 409),
        (NotFound(), 404),
        (Unsupported("startup only creates live VOD: 'uri' must be vod-live://..."), 400),
        (LimitReached("REST startups", "max_rest_startups", 2), 429),
    ],
)
def test_the_registry_s_refusal_is_the_answer(refusal, status):
    registry = Registry()
    registry.refusal = refusal
    answer = call(tree(registry), STARTUP, {"uri": "vod-live://a.mp4", "localStreamName": "x"})
    assert answer.code == status and answer.json()["message"] == refusal.info


def test_a_startup_that_takes_time_is_answered_when_the_stream_opens():
    registry = Registry()
    registry.pending = Deferred()
    answer = call(tree(registry), STARTUP, {"uri": "vod-live://s3.mp4", "localStreamName": "x"})
    assert not answer.finished and answer.body == b""
    registry.pending.callback(None)
    assert answer.finished and answer.code == 200
    assert answer.json()["localStreamName"] == "x"


def test_a_caller_who_left_is_not_written_to():
    registry = Registry()
    registry.pending = Deferred()
    answer = call(tree(registry), STARTUP, {"uri": "vod-live://s3.mp4", "localStreamName": "x"})
    answer.connectionLost(Failure(ConnectionDone()))
    registry.pending.callback(None)
    assert answer.body == b"" and not answer.finished


def test_startup_signs_a_play_token_for_the_name_when_asked():
    clock = Clock()
    clock.advance(1_000_000)
    gate = Gate(token_secret="s3cret", clock=clock)
    registry = Registry()
    answer = call(
        tree(registry, gate=gate),
        STARTUP,
        {"uri": "vod-live://a.mp4", "localStreamName": "x", "playTokenLifetime": 600},
    )
    assert answer.code == 200
    token = answer.json()["playToken"]
    assert token.startswith("1000600.")
    assert tokens.refusal("s3cret", "x", token, clock.seconds()) is None
    assert tokens.refusal("s3cret", "other", token, clock.seconds()) is not None
    assert tokens.refusal("s3cret", "x", token, 1_000_600) == "token expired"


@pytest.mark.parametrize("lifetime", [0, -5, MAX_TOKEN_LIFETIME + 1, 1.5, True, "60"])
def test_a_play_token_s_lifetime_is_bounded(lifetime):
    gate = Gate(token_secret="s3cret", clock=Clock())
    registry = Registry()
    answer = call(
        tree(registry, gate=gate),
        STARTUP,
        {"uri": "vod-live://a.mp4", "localStreamName": "x", "playTokenLifetime": lifetime},
    )
    assert answer.code == 400
    assert answer.json()["message"] == (
        f"'playTokenLifetime' must be a number of seconds from 1 to {MAX_TOKEN_LIFETIME}"
    )
    assert registry.started == []


def test_find_passes_each_criterion_and_counts_every_worker_s_hls_players():
    entry = show(viewers={"1": 2, "2": 3})
    registry = Registry(
        entry,
        Entry("other", uri="vod-live://b.mp4"),
        loads=(
            Load("1", hls={"show": 4, "vod-live://a.mp4": 1, "x": 9}),
            Load("2", hls={"show": 2}),
        ),
    )
    answer = call(tree(registry), FIND, {"localStreamName": "show"})
    assert answer.code == 200
    assert registry.asked == [{"name": "show", "uri": None, "stream_id": None}]
    [listed] = answer.json()
    assert listed == {
        "localMediaSessionId": entry.id,
        "localStreamName": "show",
        "uri": "vod-live://a.mp4",
        "status": "PROCESSED_LOCAL",
        "hasAudio": True,
        "hasVideo": True,
        "record": False,
        "loop": False,
        "viewers": 5,
        "workers": {"1": 2, "2": 3},
        "bitrate": 800_000,
        "uptime": 0.0,
        "hlsViewers": 7,
    }
    by_id = call(tree(registry), FIND, {"localMediaSessionId": entry.id, "uri": entry.uri})
    assert [item["localStreamName"] for item in by_id.json()] == ["show"]
    assert registry.asked[-1] == {"name": None, "uri": entry.uri, "stream_id": entry.id}


def test_uptime_counts_from_the_stream_s_start():
    registry = Registry(show(start=time.time() - 30))
    [listed] = call(tree(registry), FIND, {"localStreamName": "show"}).json()
    assert 29.0 <= listed["uptime"] <= 31.0


def test_find_needs_a_criterion_and_says_when_nothing_matches():
    registry = Registry(show())
    refused = call(tree(registry), FIND, {"loop": True})
    assert refused.code == 400
    assert refused.json()["message"] == "give localStreamName, uri or localMediaSessionId"
    assert registry.asked == []
    missing = call(tree(registry), FIND, {"localStreamName": "nobody"})
    assert missing.code == 404 and missing.json()["message"] == "no such stream"


def test_find_all_is_a_get_or_a_post_and_404_when_empty():
    assert call(tree(Registry()), FIND_ALL, method=b"GET").json()["message"] == "no VOD streams"
    registry = Registry(show(), Entry("b", uri="vod-live://b.mp4"))
    for answer in (
        call(tree(registry), FIND_ALL, method=b"GET"),
        call(tree(registry), FIND_ALL),
        call(tree(registry), FIND_ALL, {}),
    ):
        assert answer.code == 200
        assert [item["localStreamName"] for item in answer.json()] == ["show", "b"]
    bad = call(tree(registry), FIND_ALL, raw=b"{", headers={b"content-type": b"application/json"})
    assert bad.code == 400 and bad.json()["message"] == "body is not valid JSON"


def test_other_methods_are_405_naming_what_is_allowed():
    registry = Registry(show())
    get = call(tree(registry), FIND, method=b"GET")
    assert get.code == 405 and get.json()["message"] == "GET is not allowed here"
    assert get.header(b"allow") == b"POST, OPTIONS"
    delete = call(tree(registry), FIND_ALL, method=b"DELETE")
    assert delete.code == 405 and delete.header(b"allow") == b"GET, POST, OPTIONS"
    assert registry.asked == []


def test_terminate_stops_what_it_names_and_lists_it():
    keep, stop = show(), Entry("gone", uri="vod-live://b.mp4")
    registry = Registry(keep, stop)
    answer = call(tree(registry), TERMINATE, {"localStreamName": "gone"})
    assert answer.code == 200
    assert registry.terminated == [([stop.id], "Stopped by server")]
    assert [item["localMediaSessionId"] for item in answer.json()] == [stop.id]
    for body, status in (({}, 400), ({"localStreamName": "nobody"}, 404)):
        refused = call(tree(registry), TERMINATE, body)
        assert refused.code == status, body
    assert len(registry.terminated) == 1  # neither refusal stopped anything


def test_an_unknown_path_is_a_json_404_naming_it():
    answer = call(tree(Registry()), "/rest-api/vod/../vod/nope")
    assert answer.code == 404
    assert answer.json()["message"].startswith("no such REST endpoint: /rest-api/vod/")
    for path in ("/rest-api/nothing", "/rest-api/vod/library"):  # no library given
        answer = call(tree(Registry()), path)
        assert answer.code == 404 and answer.json()["message"] == f"no such REST endpoint: {path}"


def test_a_caller_from_another_machine_is_refused_before_anything_is_asked():
    registry = Registry(show())
    answer = call(tree(registry), FIND, {"localStreamName": "show"}, peer="192.0.2.7")
    assert answer.code == 403 and "rest_api_key" in answer.json()["message"]
    answer = call(
        tree(registry, Access(api_key="k")), FIND, {"localStreamName": "show"}, peer="192.0.2.7"
    )
    assert answer.code == 401 and answer.header(b"www-authenticate")
    assert registry.asked == []


def test_the_library_pages_with_bounded_fields():
    library = Library()
    root = tree(Registry(), library=library)
    assert call(root, LIBRARY, method=b"GET").json() == {"total": 1, "items": [{"name": "a.mp4"}]}
    call(root, LIBRARY, {"offset": 5, "limit": MAX_PAGE, "contains": "cat"})
    assert library.pages == [(0, 200, ""), (5, MAX_PAGE, "cat")]
    for body, message in [
        ({"offset": -1}, "'offset' must be a whole number from 0 to 1000000000"),
        ({"limit": MAX_PAGE + 1}, f"'limit' must be a whole number from 0 to {MAX_PAGE}"),
        ({"limit": "10"}, "'limit' must be a whole number"),
        ({"limit": None}, "'limit' must be a whole number"),
        ({"contains": "x" * 257}, "'contains' must be a string of at most 256 characters"),
        ({"contains": 5}, "'contains' must be a string"),
    ]:
        answer = call(root, LIBRARY, body)
        assert answer.code == 400 and message in answer.json()["message"], body
    assert len(library.pages) == 2
