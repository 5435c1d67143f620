"""The access rules without a backend: a fake hooks client and a fake clock, so
each rule's order, its refusals and the backend's renames are seen as the front
doors see them."""

from __future__ import annotations

from types import MappingProxyType
from typing import Any

import pytest
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.task import Clock
from twisted.python.failure import Failure

from wcs.access import tokens
from wcs.access.gate import OPEN, Gate
from wcs.errors import AccessRefused

SECRET = "s3cret"


class Hooks:
    """What the gate asks the backend, answered with ``answer`` (a dict or a refusal)."""

    def __init__(self, answer: Any = None) -> None:
        self.answer = {} if answer is None else answer
        self.asked: list[tuple[str, Any]] = []
        self.told: list[tuple[str, Any]] = []

    def ask(self, method: str, body: dict[str, Any]) -> Deferred[dict[str, Any]]:
        self.asked.append((method, body))
        if isinstance(self.answer, Exception):
            return fail(self.answer)
        return succeed(self.answer)

    def tell(self, method: str, body: dict[str, Any]) -> None:
        self.told.append((method, body))


def outcome(deferred: Deferred) -> Any:
    found: list[Any] = []
    deferred.addBoth(found.append)
    assert found, "the Deferred has not fired"
    return found[0].value if isinstance(found[0], Failure) else found[0]


def clock_at(now: float) -> Clock:
    clock = Clock()
    clock.advance(now)
    return clock


def test_with_no_rule_everything_is_allowed_at_once():
    assert not OPEN.guarded
    assert outcome(OPEN.connect({"appKey": "x"})) is None
    assert outcome(OPEN.play("vod://a.mp4", {}, {})) == "vod://a.mp4"
    assert outcome(OPEN.publish("live", {})) == "live"
    assert outcome(OPEN.record("rec.mp4", {}, {})) is None
    OPEN.tell("stopStream", {})  # nobody to tell: nothing happens, nothing fails


def test_either_rule_guards():
    assert Gate(hooks=Hooks()).guarded  # type: ignore[arg-type]
    assert Gate(token_secret=SECRET, clock=Clock()).guarded
    assert not Gate(token_secret="").guarded


@pytest.mark.parametrize(
    "token, why",
    [
        (None, "no token"),
        ("", "no token"),
        (5, "a token must be a string of at most 256 characters"),
        ("x" * 300, "a token must be a string of at most 256 characters"),
        ("nodot", "malformed token (expected <expires>.<signature>)"),
        ("-5.abc", "malformed token (expected <expires>.<signature>)"),
        ("2000.abc", "token signature does not match this stream name"),
    ],
)
def test_a_play_without_a_good_token_is_refused_saying_why(token, why):
    gate = Gate(token_secret=SECRET, clock=clock_at(1000))
    refused = outcome(gate.play("show", {"token": token}, {}))
    assert isinstance(refused, AccessRefused)
    assert refused.info == "Restricted access" and refused.reason == why
    assert refused.detail == f"Restricted access: {why}"


def test_a_token_opens_its_own_name_until_it_expires():
    clock = clock_at(1000)
    gate = Gate(token_secret=SECRET, clock=clock)
    token = gate.sign("vod://movie.mp4", 60)
    assert token == tokens.sign(SECRET, "vod://movie.mp4", 1060)
    assert outcome(gate.play("vod://movie.mp4", {"token": token}, {})) == "vod://movie.mp4"
    other = outcome(gate.play("vod://other.mp4", {"token": token}, {}))
    assert other.reason == "token signature does not match this stream name"
    assert outcome(
        Gate(token_secret="another", clock=clock).play("vod://movie.mp4", {"token": token}, {})
    ).reason.startswith("token signature")
    clock.advance(59.9)
    assert outcome(gate.play("vod://movie.mp4", {"token": token}, {})) == "vod://movie.mp4"
    clock.advance(0.1)
    assert outcome(gate.play("vod://movie.mp4", {"token": token}, {})).reason == "token expired"


def test_a_bad_token_is_refused_before_the_backend_is_asked():
    hooks = Hooks({"name": "elsewhere"})
    gate = Gate(hooks=hooks, token_secret=SECRET, clock=clock_at(1000))  # type: ignore[arg-type]
    assert isinstance(outcome(gate.play("show", {}, {"name": "show"})), AccessRefused)
    assert hooks.asked == []
    good = gate.sign("show", 60)
    assert outcome(gate.play("show", {"token": good}, {"name": "show"})) == "elsewhere"
    assert hooks.asked == [("playStream", {"name": "show"})]


def test_the_backend_may_rename_a_play_or_a_publication():
    hooks = Hooks({"name": "vod://other.mp4"})
    gate = Gate(hooks=hooks)  # type: ignore[arg-type]
    assert outcome(gate.play("vod://a.mp4", {}, {"name": "vod://a.mp4"})) == "vod://other.mp4"
    assert outcome(gate.publish("live", {"name": "live"})) == "vod://other.mp4"
    assert [method for method, _ in hooks.asked] == ["playStream", "publishStream"]


@pytest.mark.parametrize(
    "answer",
    [
        {},
        {"name": ""},
        {"name": None},
        {"name": 5},
        {"name": ["x"]},
        {"name": "x" * 1025},  # longer than any stream name
        {"other": "field"},
    ],
)
def test_an_answer_without_a_usable_name_keeps_the_page_s(answer):
    gate = Gate(hooks=Hooks(answer))  # type: ignore[arg-type]
    assert outcome(gate.play("show", {}, {})) == "show"
    assert outcome(gate.publish("live", {})) == "live"


def test_the_backend_s_no_is_the_refusal():
    refusal = AccessRefused("the backend answered playStream with HTTP 403")
    gate = Gate(hooks=Hooks(refusal))  # type: ignore[arg-type]
    for asking in (
        gate.play("show", {}, {}),
        gate.publish("live", {}),
        gate.connect({}),
        gate.record("rec.mp4", {}, {}),
    ):
        assert outcome(asking) is refusal


def test_connect_asks_the_backend_with_the_body_as_a_plain_dict():
    hooks = Hooks({"name": "ignored"})
    gate = Gate(hooks=hooks)  # type: ignore[arg-type]
    body = MappingProxyType({"appKey": "defaultApp", "sessionId": "s1"})
    assert outcome(gate.connect(body)) is None  # what a connect answers is not a name
    [(method, sent)] = hooks.asked
    assert method == "connect" and type(sent) is dict and sent == dict(body)


def test_a_record_needs_a_record_token_not_a_stream_s():
    clock = clock_at(1000)
    gate = Gate(token_secret=SECRET, clock=clock)
    stream_token = gate.sign("rec.mp4", 60)
    assert outcome(gate.record("rec.mp4", {"token": stream_token}, {})).reason == (
        "token signature does not match this stream name"
    )
    assert outcome(gate.record("rec.mp4", {}, {})).reason == "no token"
    record_token = gate.sign(tokens.RECORDS + "rec.mp4", 60)
    assert outcome(gate.record("rec.mp4", {"token": record_token}, {})) is None
    assert isinstance(outcome(gate.record("other.mp4", {"token": record_token}, {})), AccessRefused)


def test_a_record_download_is_asked_as_a_play_with_its_query():
    hooks = Hooks({"name": "somewhere-else.mp4"})
    gate = Gate(hooks=hooks)  # type: ignore[arg-type]
    body = {"name": "rec.mp4", "record": True, "custom": {"user": "u1"}}
    assert outcome(gate.record("rec.mp4", {"user": "u1"}, body)) is None
    assert hooks.asked == [("playStream", body)]


def test_notices_go_to_the_backend_only_when_there_is_one():
    hooks = Hooks()
    gate = Gate(hooks=hooks)  # type: ignore[arg-type]
    gate.tell("stopStream", MappingProxyType({"name": "show"}))
    assert hooks.told == [("stopStream", {"name": "show"})]
    assert type(hooks.told[0][1]) is dict
    Gate(token_secret=SECRET, clock=Clock()).tell("stopStream", {})  # no backend: no error


def test_publications_need_no_token():
    """A play token names what may be watched; publishing is the backend's to allow."""
    gate = Gate(token_secret=SECRET, clock=clock_at(1000))
    assert outcome(gate.publish("live", {"name": "live"})) == "live"
