"""REST plumbing that tests/test_rest_unit.py leaves out: routing through the
real tree (unknown paths, the root), the route a request is counted under,
loopback and host checks with hostile values, preflights with a key set,
refusals that come later, and the statuses of access and cluster errors."""

from __future__ import annotations

from typing import Any

import pytest
from twisted.internet.defer import Deferred
from twisted.web import resource

from tests.webcalls import call
from wcs.errors import AccessRefused, ClusterUnavailable
from wcs.metrics import Meters
from wcs.web.rest import Access, RestArea, RestRoot


def tree(access: Access | None = None, handler: Any = None) -> resource.Resource:
    access = access or Access()
    area = RestArea(access)
    area.operation("go", handler or (lambda request: (200, {"ok": True})))
    area.operation("look", lambda request: (200, []), get_allowed=True)
    rest = RestRoot(access)
    rest.putChild(b"area", area)
    root = resource.Resource()
    root.putChild(b"rest-api", rest)
    return root


@pytest.mark.parametrize(
    "path",
    [
        "/rest-api/",
        "/rest-api",
        "/rest-api/nothing",
        "/rest-api/area/nothing",
        "/rest-api/area/%2e%2e/area/go",
    ],
)
def test_a_path_no_area_owns_is_a_json_404_naming_it(path):
    answer = call(tree(), path, {})
    assert answer.code == 404
    assert answer.header(b"content-type") == b"application/json; charset=utf-8"
    assert answer.json() == {
        "status": 404,
        "error": "Not Found",
        "message": f"no such REST endpoint: {answer.path.decode()}",
    }


def test_a_path_that_is_not_utf_8_is_still_answered_in_json():
    answer = call(tree(), b"/rest-api/\xff\xfe", {})
    assert answer.code == 404 and answer.json()["message"].startswith("no such REST endpoint: ")


def test_unknown_paths_are_refused_to_other_machines_too():
    answer = call(tree(), "/rest-api/secret-endpoint", {}, peer="192.0.2.7")
    assert answer.code == 403 and "secret-endpoint" not in answer.body.decode()


def test_requests_are_counted_by_operation_and_every_unknown_path_as_one(monkeypatch):
    """Metrics' labels stay bounded whatever paths callers invent."""
    meters = Meters()
    monkeypatch.setattr("wcs.web.rest.METERS", meters)
    call(tree(), "/rest-api/area/go", {})
    call(tree(), "/rest-api/area/go", {}, peer="192.0.2.7")
    for n in range(50):
        call(tree(), f"/rest-api/area/x{n}", {})
    assert dict(meters.rest) == {
        ("/rest-api/area/go", 200): 1,
        ("/rest-api/area/go", 403): 1,
        ("unknown", 404): 50,
    }


@pytest.mark.parametrize(
    "peer, status",
    [
        ("::1", 200),
        ("::ffff:127.0.0.1", 200),
        ("::ffff:192.0.2.1", 403),
        ("fe80::1", 403),
    ],
)
def test_ipv6_callers_are_this_machine_only_on_loopback(peer, status):
    assert call(tree(), "/rest-api/area/go", {}, peer=peer).code == status


@pytest.mark.parametrize(
    "host, status",
    [
        (b"LOCALHOST:8081", 200),
        (b"[::1]", 200),
        (b"127.0.0.2", 200),
        (b"localhost.evil.example", 403),
        (b"127.0.0.1.nip.io", 403),
        (b"evil.example#127.0.0.1", 403),
        (b"", 200),  # (no name: this machine)
    ],
)
def test_the_host_asked_for_must_name_this_machine(host, status):
    answer = call(tree(), "/rest-api/area/go", {}, headers={b"host": host})
    assert answer.code == status, host
    if status == 403:
        assert "until rest_api_key is set" in answer.json()["message"]


@pytest.mark.parametrize(
    "origin, status",
    [
        (b"null", 403),  # a sandboxed page or a file
        (b"http://127.0.0.1:8081/", 200),  # its own origin, with a slash
        (b"HTTP://127.0.0.1:8081", 200),
        (b"http://127.0.0.1:8082", 403),  # another port is another origin
        (b"https://127.0.0.1:8081", 403),  # another scheme too
    ],
)
def test_only_the_api_s_own_origin_without_a_list(origin, status):
    answer = call(
        tree(), "/rest-api/area/go", {}, headers={b"host": b"127.0.0.1:8081", b"origin": origin}
    )
    assert answer.code == status, origin


def test_a_preflight_needs_no_key_but_the_call_does():
    """Browsers send no credentials with a preflight: it must not be a 401."""
    access = Access(api_key="k3y", cors_origins=("https://app.example",))
    headers = {b"origin": b"https://app.example", b"host": b"api.example"}
    preflight = call(
        tree(access), "/rest-api/area/go", method=b"OPTIONS", headers=headers, peer="203.0.113.5"
    )
    assert preflight.code == 204 and preflight.body == b""
    assert preflight.header(b"access-control-allow-origin") == b"https://app.example"
    assert preflight.header(b"access-control-allow-headers") == b"Content-Type, Authorization"
    assert preflight.header(b"vary") == b"Origin"
    without = call(tree(access), "/rest-api/area/go", {}, headers=headers, peer="203.0.113.5")
    assert without.code == 401
    assert without.header(b"access-control-allow-origin") == b"https://app.example"
    keyed = call(
        tree(access),
        "/rest-api/area/go",
        {},
        peer="203.0.113.5",
        headers={**headers, b"authorization": b"Bearer k3y"},
    )
    assert keyed.code == 200 and keyed.json() == {"ok": True}


def test_a_refusal_that_comes_later_is_answered_in_json():
    waiting: Deferred = Deferred()
    answer = call(tree(handler=lambda request: waiting), "/rest-api/area/go", {})
    assert not answer.finished
    waiting.errback(AccessRefused("the backend answered connect with HTTP 403"))
    assert answer.finished and answer.code == 403
    assert answer.json()["message"] == (
        "Restricted access: the backend answered connect with HTTP 403"
    )


def test_a_bug_that_comes_later_is_a_500_without_its_text():
    waiting: Deferred = Deferred()
    answer = call(tree(handler=lambda request: waiting), "/rest-api/area/go", {})
    waiting.errback(ZeroDivisionError("secret detail"))
    assert answer.code == 500 and answer.json()["message"] == "internal error: ZeroDivisionError"


def test_an_unreachable_cluster_is_503():
    def refusing(request: Any) -> Any:
        raise ClusterUnavailable("the supervisor did not answer")

    answer = call(tree(handler=refusing), "/rest-api/area/go", {})
    assert answer.code == 503
    assert answer.json()["message"] == (
        "Cluster unavailable: the server's stream names cannot "
        "be reached (the supervisor did not answer)"
    )


def test_get_only_where_allowed():
    assert call(tree(), "/rest-api/area/look", method=b"GET").code == 200
    head = call(tree(), "/rest-api/area/look", method=b"HEAD")
    assert head.code == 405 and head.header(b"allow") == b"GET, POST, OPTIONS"
    get = call(tree(), "/rest-api/area/go", method=b"GET")
    assert get.code == 405 and get.header(b"allow") == b"POST, OPTIONS"
