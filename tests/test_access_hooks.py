"""REST hooks without a backend process: treq's in-memory stand-in (``StubTreq``,
a real twisted.web resource as the backend) for what is sent and answered, and
a hand-driven client on a fake clock for timeouts, dropped connections and the
bounds on questions, notices and answers."""

from __future__ import annotations

import json
from typing import Any

import pytest
from treq.testing import StubTreq
from twisted.internet.defer import Deferred, fail
from twisted.internet.error import ConnectionDone, ConnectionLost, ConnectionRefusedError
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.web import resource
from twisted.web._newclient import ResponseDone
from twisted.web.client import ResponseNeverReceived
from twisted.web.server import Request

from wcs.access import hooks as module
from wcs.access.hooks import MAX_ANSWER, MAX_ASKING, MAX_TELLING, RestHooks
from wcs.errors import AccessRefused


class Backend(resource.Resource):
    """The operator's backend: every POST kept, answered as ``answers`` says."""

    isLeaf = True

    def __init__(self, answers: dict[str, tuple[int, bytes]] | None = None) -> None:
        super().__init__()
        self.answers = answers or {}
        self.got: list[tuple[bytes, bytes, str | None, bytes]] = []

    def render(self, request: Request) -> bytes:
        self.got.append(
            (
                request.method,
                request.path,
                request.getHeader("content-type"),
                request.content.read(),
            )
        )
        code, body = self.answers.get(request.path.rsplit(b"/", 1)[-1].decode(), (200, b""))
        request.setResponseCode(code)
        return body


def backed(backend: Backend, url: str = "http://backend.example/hooks") -> RestHooks:
    hooks = RestHooks(url, timeout=3.0, reactor=Clock())
    hooks._http = hooks._fresh = StubTreq(backend)  # treq's own in-memory client: nothing leaves the process
    return hooks


def outcome(deferred: Deferred) -> Any:
    found: list[Any] = []
    deferred.addBoth(found.append)
    assert found, "the Deferred has not fired"
    if isinstance(found[0], Failure):
        return found[0].value
    return found[0]


def test_a_question_is_a_json_post_to_the_method_s_url():
    backend = Backend({"connect": (200, b'{"name": "renamed", "extra": [1]}')})
    hooks = backed(backend, "http://backend.example/hooks/")  # (its slash dropped)
    answer = outcome(hooks.ask("connect", {"appKey": "defaultApp", "sessionId": "s1"}))
    assert answer == {"name": "renamed", "extra": [1]}
    [(method, path, kind, body)] = backend.got
    assert (method, path, kind) == (b"POST", b"/hooks/connect", "application/json")
    assert body == b'{"appKey":"defaultApp","sessionId":"s1"}'
    assert hooks.asking == 0


@pytest.mark.parametrize("body", [b"", b"  ", b"not json", b"[1, 2]", b'"yes"', b"\xff\xfe"])
def test_a_yes_without_a_json_object_is_an_empty_answer(body):
    hooks = backed(Backend({"playStream": (200, body)}))
    assert outcome(hooks.ask("playStream", {})) == {}


@pytest.mark.parametrize("code", [204, 299])
def test_any_2xx_is_a_yes(code):
    assert outcome(backed(Backend({"publishStream": (code, b"")})).ask("publishStream", {})) == {}


@pytest.mark.parametrize("code", [400, 401, 403, 404, 500, 503])
def test_any_other_status_is_a_refusal_naming_it(code):
    hooks = backed(Backend({"playStream": (code, b'{"name": "x"}')}))
    refused = outcome(hooks.ask("playStream", {"name": "show"}))
    assert isinstance(refused, AccessRefused)
    assert refused.info == "Restricted access"
    assert refused.reason == f"the backend answered playStream with HTTP {code}"
    assert hooks.asking == 0


@pytest.mark.parametrize("code", [301, 302, 307, 308])
def test_a_redirect_is_a_refusal_and_the_post_is_not_sent_elsewhere(code):
    class Redirecting(Backend):
        def render(self, request: Request) -> bytes:
            request.setHeader(b"location", b"http://elsewhere.example/yes")
            return super().render(request)

    backend = Redirecting({"playStream": (code, b"")})
    refused = outcome(backed(backend).ask("playStream", {"name": "show"}))
    assert isinstance(refused, AccessRefused) and str(code) in refused.reason
    assert [(method, path) for method, path, _, _ in backend.got] == [
        (b"POST", b"/hooks/playStream")
    ]


def test_an_answer_longer_than_64_kib_is_a_refusal():
    exact = backed(Backend({"connect": (200, b'{"a": "' + b"x" * (MAX_ANSWER - 10) + b'"}')}))
    assert len(b'{"a": "' + b"x" * (MAX_ANSWER - 10) + b'"}') == MAX_ANSWER - 1
    assert list(outcome(exact.ask("connect", {}))) == ["a"]
    hooks = backed(Backend({"connect": (200, b" " * (MAX_ANSWER + 1))}))
    refused = outcome(hooks.ask("connect", {}))
    assert isinstance(refused, AccessRefused)
    assert refused.reason == (
        f"the backend did not answer connect: an answer longer than {MAX_ANSWER} bytes"
    )
    assert hooks.asking == 0


def test_a_notice_is_sent_and_not_waited_for():
    backend = Backend({"stopStream": (500, b"")})
    hooks = backed(backend)
    assert hooks.tell("stopStream", {"name": "show", "status": "STOPPED"}) is None
    assert backend.got == [
        (b"POST", b"/hooks/stopStream", "application/json", b'{"name":"show","status":"STOPPED"}')
    ]
    assert hooks.telling == 0  # answered (even with an error): no longer in flight


class Client:
    """treq's ``post`` answered by hand: each call a Deferred the test fires."""

    def __init__(self) -> None:
        self.posts: list[tuple[str, bytes, Deferred]] = []

    def post(self, url: str, data: bytes, headers: Any, allow_redirects: bool = True) -> Deferred:
        waiting: Deferred = Deferred()
        self.posts.append((url, data, waiting))
        return waiting


class Response:
    """An answer whose body comes in pieces, then ends."""

    def __init__(self, code: int, body: bytes = b"") -> None:
        self.code = code
        self.body = body
        self.length = len(body)
        self.transport = StringTransport()

    def deliverBody(self, protocol: Any) -> None:
        protocol.makeConnection(self.transport)
        for start in range(0, len(self.body), 4096):
            protocol.dataReceived(self.body[start : start + 4096])
        protocol.connectionLost(Failure(ResponseDone()))


def by_hand(timeout: float = 3.0) -> tuple[RestHooks, Client, Clock]:
    clock = Clock()
    hooks = RestHooks("http://backend.example", timeout=timeout, reactor=clock)
    client = Client()
    hooks._http = hooks._fresh = client
    return hooks, client, clock


def test_a_backend_that_does_not_answer_in_time_is_a_refusal():
    hooks, client, clock = by_hand(timeout=0.25)
    asking = hooks.ask("connect", {})
    clock.advance(0.249)
    assert not asking.called and hooks.asking == 1
    clock.advance(0.002)
    refused = outcome(asking)
    assert isinstance(refused, AccessRefused)
    assert (
        refused.reason == "the backend did not answer connect: no answer in 250 ms "
        "(rest_hook_timeout)"
    )
    assert client.posts[0][2].called  # the POST itself was cancelled
    assert hooks.asking == 0


def test_a_backend_that_is_down_is_a_refusal_saying_so():
    hooks, client, _ = by_hand()
    asking = hooks.ask("publishStream", {})
    client.posts[0][2].errback(ConnectionRefusedError("Connection was refused by other side"))
    refused = outcome(asking)
    assert isinstance(refused, AccessRefused)
    assert refused.reason.startswith("the backend did not answer publishStream: ")
    assert "refused" in refused.reason and len(client.posts) == 1


@pytest.mark.parametrize("dropped", [ConnectionDone, ConnectionLost])
def test_a_kept_connection_closed_meanwhile_is_posted_again_once(dropped):
    hooks, client, _ = by_hand()
    asking = hooks.ask("connect", {"a": 1})
    client.posts[0][2].errback(ResponseNeverReceived([Failure(dropped())]))
    assert len(client.posts) == 2 and client.posts[1][:2] == client.posts[0][:2]
    client.posts[1][2].callback(Response(200, b'{"ok": true}'))
    assert outcome(asking) == {"ok": True}
    again = hooks.ask("connect", {})
    client.posts[2][2].errback(ResponseNeverReceived([Failure(dropped())]))
    client.posts[3][2].errback(ResponseNeverReceived([Failure(dropped())]))
    assert isinstance(outcome(again), AccessRefused) and len(client.posts) == 4



def test_the_second_post_goes_on_a_connection_of_its_own():
    """Not through the pool of kept connections, which could hand it another
    one the backend closed (a run saw both tries fail so)."""
    hooks, kept, _ = by_hand()
    fresh = hooks._fresh = Client()
    asking = hooks.ask("connect", {"a": 1})
    kept.posts[0][2].errback(ResponseNeverReceived([Failure(ConnectionDone())]))
    assert len(kept.posts) == 1 and len(fresh.posts) == 1
    fresh.posts[0][2].callback(Response(200, b"{}"))
    assert outcome(asking) == {}


def test_a_post_that_failed_otherwise_is_not_sent_twice():
    hooks, client, _ = by_hand()
    asking = hooks.ask("connect", {})
    client.posts[0][2].errback(ResponseNeverReceived([Failure(ValueError("bad chunk"))]))
    refused = outcome(asking)
    assert len(client.posts) == 1
    assert refused.reason == "the backend did not answer connect: bad chunk"


def test_the_retry_keeps_to_the_first_post_s_timeout():
    hooks, client, clock = by_hand(timeout=1.0)
    asking = hooks.ask("connect", {})
    clock.advance(0.9)
    client.posts[0][2].errback(ResponseNeverReceived([Failure(ConnectionDone())]))
    clock.advance(0.11)
    assert "no answer in 1000 ms" in outcome(asking).reason


def test_questions_in_flight_are_bounded():
    hooks, client, _ = by_hand()
    waiting = [hooks.ask("connect", {"n": n}) for n in range(MAX_ASKING)]
    assert hooks.asking == MAX_ASKING and len(client.posts) == MAX_ASKING
    over = outcome(hooks.ask("connect", {}))
    assert isinstance(over, AccessRefused)
    assert over.reason == "the backend is not answering fast enough"
    assert len(client.posts) == MAX_ASKING  # not sent
    client.posts[0][2].callback(Response(200))
    assert outcome(waiting[0]) == {} and hooks.asking == MAX_ASKING - 1
    hooks.ask("connect", {})
    assert len(client.posts) == MAX_ASKING + 1


def test_notices_in_flight_are_bounded_and_the_rest_dropped():
    hooks, client, _ = by_hand()
    for n in range(MAX_TELLING + 3):
        hooks.tell("stopStream", {"n": n})
    assert len(client.posts) == MAX_TELLING and hooks.dropped == 3
    client.posts[0][2].errback(ConnectionRefusedError())
    client.posts[1][2].callback(Response(200))
    assert hooks.telling == MAX_TELLING - 2
    hooks.tell("stopStream", {})
    assert len(client.posts) == MAX_TELLING + 1 and hooks.dropped == 3


def test_a_notice_s_timeout_frees_its_place():
    hooks, client, clock = by_hand(timeout=2.0)
    hooks.tell("ConnectionStatusEvent", {"status": "DISCONNECTED"})
    assert hooks.telling == 1
    clock.advance(2.0)
    assert hooks.telling == 0 and client.posts[0][2].called


def test_bodies_are_compact_json():
    hooks, client, _ = by_hand()
    hooks.ask("playStream", {"name": "é", "custom": {"token": None}})
    url, data, _ = client.posts[0]
    assert url == "http://backend.example/playStream"
    assert json.loads(data) == {"name": "é", "custom": {"token": None}} and b" " not in data


def test_a_question_answered_at_once_is_answered_at_once():
    """(``fail`` from the client: a refusal without waiting on the clock.)"""
    hooks, client, _ = by_hand()
    client.post = lambda url, data, headers, **_: fail(ConnectionRefusedError())  # type: ignore
    assert isinstance(outcome(hooks.ask("connect", {})), AccessRefused)
    assert hooks.asking == 0


def test_the_module_s_bounds():
    """The bounds docs/architecture.md promises an operator."""
    assert (module.MAX_ASKING, module.MAX_TELLING, module.MAX_ANSWER) == (256, 256, 65536)


def test_a_303_is_a_refusal_not_a_yes_from_wherever_it_points():
    """hooks.py: "any other answer [than 2xx] ... is a refusal"; a redirect is
    never followed (a 303 once became a GET whose 2xx read as a yes)."""
    from twisted.web.server import Request

    from wcs.errors import AccessRefused

    class SeeOther(Backend):
        def render(self, request: Request) -> bytes:
            if request.path.endswith(b"/playStream"):
                request.setHeader(b"location", b"http://backend.example/anything")
                return super().render(request)
            self.got.append((request.method, request.path, None, b""))
            return b'{"name": "vod://other.mp4"}'

    backend = SeeOther({"playStream": (303, b"")})
    refused = outcome(backed(backend).ask("playStream", {"name": "show"}))
    assert isinstance(refused, AccessRefused), refused
    assert "303" in refused.reason
    assert [(m, p) for m, p, _, _ in backend.got] == [(b"POST", b"/hooks/playStream")]
