"""``/rest-api/cluster/workers`` without a server: every worker's load from a
fake registry, in worker order, without what other pages list."""

from __future__ import annotations

from twisted.internet.defer import Deferred, succeed
from twisted.web import resource

from tests.webcalls import call
from wcs.cluster.store import Load
from wcs.web.cluster import ClusterApi
from wcs.web.rest import Access, RestRoot

WORKERS = "/rest-api/cluster/workers"


class Registry:
    def __init__(self, *loads: Load) -> None:
        self.queries = self.snapshots = self  # the registry's parts, played by the fake
        self.held = list(loads)
        self.asked = 0

    def loads(self) -> Deferred[list[Load]]:
        self.asked += 1
        return succeed(list(self.held))


def tree(registry: Registry, access: Access | None = None) -> resource.Resource:
    root, rest = resource.Resource(), RestRoot(Access())
    rest.putChild(b"cluster", ClusterApi(registry, access or Access()))  # type: ignore[arg-type]
    root.putChild(b"rest-api", rest)
    return root


def test_each_worker_s_load_in_worker_order_without_its_sessions():
    registry = Registry(
        Load(
            "n/2",
            node="n",
            pid=12,
            viewers=3,
            cpu=0.5,
            streams=1,
            media=[{"id": "p1"}],
            hls={"show": 2},
        ),
        Load("n/1", node="n", pid=11),
    )
    answer = call(tree(registry), WORKERS, method=b"GET")
    assert answer.code == 200
    assert answer.json() == [
        {"worker": "n/1", "node": "n", "pid": 11, "viewers": 0, "cpu": 0.0, "streams": 0},
        {"worker": "n/2", "node": "n", "pid": 12, "viewers": 3, "cpu": 0.5, "streams": 1},
    ]
    assert registry.held[0].media == [{"id": "p1"}]  # the registry's own load untouched


def test_a_post_may_carry_an_empty_body_or_a_json_object_but_nothing_else():
    registry = Registry(Load("1"))
    assert call(tree(registry), WORKERS).code == 200
    assert call(tree(registry), WORKERS, {}).code == 200
    bad = call(
        tree(registry), WORKERS, raw=b"{oops", headers={b"content-type": b"application/json"}
    )
    assert bad.code == 400 and bad.json()["message"] == "body is not valid JSON"
    form = call(
        tree(registry),
        WORKERS,
        raw=b"a=b",
        headers={b"content-type": b"application/x-www-form-urlencoded"},
    )
    assert form.code == 415
    assert registry.asked == 2


def test_no_worker_reported_is_an_empty_list_not_a_404():
    answer = call(tree(Registry()), WORKERS, method=b"GET")
    assert answer.code == 200 and answer.json() == []


def test_put_is_405_and_other_names_404():
    registry = Registry(Load("1"))
    put = call(tree(registry), WORKERS, method=b"PUT")
    assert put.code == 405 and put.header(b"allow") == b"GET, POST, OPTIONS"
    other = call(tree(registry), "/rest-api/cluster/nodes", method=b"GET")
    assert other.code == 404
    assert other.json()["message"] == "no such REST endpoint: /rest-api/cluster/nodes"
    assert registry.asked == 0


def test_loads_are_guarded_as_the_rest_of_the_api():
    registry = Registry(Load("1"))
    assert call(tree(registry), WORKERS, method=b"GET", peer="203.0.113.9").code == 403
    keyed = tree(registry, Access(api_key="k3y"))
    assert call(keyed, WORKERS, method=b"GET", peer="203.0.113.9").code == 401
    ok = call(
        keyed, WORKERS, method=b"GET", peer="203.0.113.9", headers={b"authorization": b"Bearer k3y"}
    )
    assert ok.code == 200 and registry.asked == 1
