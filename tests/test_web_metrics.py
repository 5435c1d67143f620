"""``/metrics`` without a server: families from a fake collector rendered in
Prometheus's text format, guarded as REST is, every scrape counted."""

from __future__ import annotations

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.error import ConnectionDone
from twisted.python.failure import Failure
from twisted.web import resource

from tests.webcalls import call
from wcs.metrics import Meters
from wcs.web.metrics import MetricsPage
from wcs.web.rest import Access


def families() -> list[Metric]:
    viewers = GaugeMetricFamily("wcs_viewers", "Viewers now", labels=["worker", "provider"])
    viewers.add_metric(["1", "WebRTC"], 3)
    viewers.add_metric(["2", "MSE"], 1)
    sent = CounterMetricFamily("wcs_sent_bytes", "Bytes sent", labels=["worker"])
    sent.add_metric(["1"], 12345)
    return [viewers, sent]


class Collector:
    """``collect``: the families now, or a Deferred the test fires, or a failure."""

    def __init__(self, answer: Deferred[list[Metric]] | None = None) -> None:
        self.answer = answer
        self.calls = 0

    def __call__(self) -> Deferred[list[Metric]]:
        self.calls += 1
        return self.answer if self.answer is not None else succeed(families())


def tree(collect: Collector, access: Access | None = None) -> resource.Resource:
    root = resource.Resource()
    root.putChild(b"metrics", MetricsPage(collect, access or Access()))
    return root


def test_a_scrape_is_every_family_in_the_text_format(monkeypatch):
    meters = Meters()
    monkeypatch.setattr("wcs.web.rest.METERS", meters)  # where scrapes are counted
    answer = call(tree(Collector()), "/metrics", method=b"GET")
    assert answer.finished and answer.code == 200
    assert answer.header(b"content-type") == CONTENT_TYPE_LATEST.encode()
    assert answer.header(b"content-length") == str(len(answer.body)).encode()
    text = answer.body.decode()
    assert "# TYPE wcs_viewers gauge" in text
    assert 'wcs_viewers{provider="WebRTC",worker="1"} 3.0' in text
    assert 'wcs_viewers{provider="MSE",worker="2"} 1.0' in text
    assert 'wcs_sent_bytes_total{worker="1"} 12345.0' in text
    assert dict(meters.rest) == {("/metrics", 200): 1}


def test_head_says_the_length_and_sends_no_body():
    answer = call(tree(Collector()), "/metrics", method=b"HEAD")
    assert answer.finished and answer.code == 200
    full = call(tree(Collector()), "/metrics", method=b"GET")
    assert answer.header(b"content-length") == str(len(full.body)).encode()
    assert answer.wire.endswith(b"\r\n\r\n")  # headers only
    assert b"wcs_viewers" not in answer.wire


def test_other_methods_are_405_without_collecting():
    collect = Collector()
    answer = call(tree(collect), "/metrics", {}, method=b"POST")
    assert answer.code == 405 and answer.json()["message"] == "metrics are read with GET"
    assert answer.header(b"allow") == b"GET, HEAD, OPTIONS"
    assert collect.calls == 0


def test_guarded_as_rest_is(monkeypatch):
    meters = Meters()
    monkeypatch.setattr("wcs.web.rest.METERS", meters)
    collect = Collector()
    remote = call(tree(collect), "/metrics", method=b"GET", peer="192.0.2.7")
    assert remote.code == 403 and "rest_api_key" in remote.json()["message"]
    assert dict(meters.rest) == {("/metrics", 403): 1}
    keyed = tree(collect, Access(api_key="scrape-k3y"))
    wrong = call(
        keyed,
        "/metrics",
        method=b"GET",
        peer="192.0.2.7",
        headers={b"authorization": b"Bearer nope"},
    )
    assert wrong.code == 401 and wrong.header(b"www-authenticate")
    assert collect.calls == 0
    ok = call(
        keyed,
        "/metrics",
        method=b"GET",
        peer="192.0.2.7",
        headers={b"authorization": b"Bearer scrape-k3y"},
    )
    assert ok.code == 200 and b"wcs_viewers" in ok.body and collect.calls == 1


def test_a_collection_that_fails_is_a_json_500():
    answer = call(
        tree(Collector(fail(RuntimeError("worker 2 sent junk")))), "/metrics", method=b"GET"
    )
    assert answer.finished and answer.code == 500
    assert answer.json()["message"] == "internal error while collecting metrics"
    assert "junk" not in answer.body.decode()


def test_a_slow_collection_answers_when_ready_and_never_a_scraper_that_left():
    waiting: Deferred[list[Metric]] = Deferred()
    answer = call(tree(Collector(waiting)), "/metrics", method=b"GET")
    assert not answer.finished and answer.body == b""
    waiting.callback(families())
    assert answer.finished and b"wcs_sent_bytes_total" in answer.body
    gone_wait: Deferred[list[Metric]] = Deferred()
    gone = call(tree(Collector(gone_wait)), "/metrics", method=b"GET")
    gone.connectionLost(Failure(ConnectionDone()))
    gone_wait.callback(families())
    assert gone.body == b"" and not gone.finished
    failed_wait: Deferred[list[Metric]] = Deferred()
    failed = call(tree(Collector(failed_wait)), "/metrics", method=b"GET")
    failed.connectionLost(Failure(ConnectionDone()))
    failed_wait.errback(RuntimeError("late"))
    assert failed.body == b""
