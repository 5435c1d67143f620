"""The process's meters and their families, read back by prometheus_client's
own parser, and carried between workers."""

from __future__ import annotations

import gc
import json

import pytest
from prometheus_client.exposition import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from twisted.internet.task import Clock

from wcs.metrics import (
    LAG_PROBE,
    MAX_REASONS,
    Meters,
    ReactorLag,
    Recent,
    families,
    from_wire,
    labelled,
    merged,
    reason_of,
    to_wire,
)
from wcs.web.metrics import Families

pytestmark = pytest.mark.unit


class Sender:
    def __init__(self) -> None:
        self.packets = self.octets = 0


class State:
    def sessions(self) -> int:
        return 3

    def streams(self) -> dict[str, int]:
        return {"vod": 2, "vod-live": 1}

    def viewers(self) -> dict[str, int]:
        return {"WebRTC": 4, "MSE": 1, "HLS": 0}


def parsed(metrics) -> dict[tuple[str, tuple], float]:
    """Every sample as the Prometheus text says it: (name, labels) -> value."""
    text = generate_latest(Families(metrics)).decode()
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


def test_traffic_counts_open_senders_and_keeps_what_ended_ones_sent():
    meters = Meters()
    first, second = Sender(), Sender()
    meters.traffic("WebRTC").opened(first)
    meters.traffic("WebRTC").opened(second)
    first.packets, first.octets = 10, 1000
    second.packets, second.octets = 5, 500
    assert meters.traffic("WebRTC").totals() == (15, 1500)
    meters.traffic("WebRTC").closed(first)
    meters.traffic("WebRTC").closed(first)  # once only
    first.packets = 99  # (what it does after it ended is not counted)
    assert meters.traffic("WebRTC").totals() == (15, 1500)
    del second
    gc.collect()  # dropped without closing: not held, and not counted
    assert meters.traffic("WebRTC").totals() == (10, 1000)
    meters.traffic("HLS").add(1, 188)
    assert meters.traffic("HLS").totals() == (1, 188)


def test_failure_reasons_keep_only_the_fixed_part_and_are_capped():
    assert reason_of("Limit reached: plays per session (max_plays_per_session=16)") == \
        "Limit reached"
    assert reason_of("Unsupported stream scheme 'rtsp'") == "Unsupported stream scheme"
    assert reason_of("File not found") == "File not found"
    assert reason_of(None) == reason_of("") == "unknown"
    meters = Meters()
    for number in range(MAX_REASONS + 10):
        meters.failed(f"reason{chr(65 + number % 26)}{chr(65 + number // 26)} x")
    assert len(meters.failures) == MAX_REASONS + 1 and meters.failures["other"] == 10


def test_recent_forgets_after_its_window_and_stays_bounded():
    recent = Recent(window=30, most=3)
    recent.seen("a", 0)
    recent.seen("b", 10)
    recent.seen("a", 20)
    assert recent.count(25) == 2
    assert recent.count(45) == 1  # b last seen at 10
    for key in "cdef":
        recent.seen(key, 50)
    assert recent.count(50) == 3


def test_families_parse_back_with_every_value():
    meters = Meters()
    sender = Sender()
    sender.packets, sender.octets = 7, 700
    meters.traffic("MSE").opened(sender)
    meters.samples_read["video"] += 30
    meters.failed("File not found")
    meters.answered("/rest-api/vod/startup", 200)
    meters.answered("/rest-api/vod/startup", 404)
    meters.s3_bytes, meters.s3_errors = 4096, 2
    meters.ice_tcp["refused"] += 3
    meters.lag.observe(0.002)
    meters.lag.observe(3.0)
    held = Sender()  # (any object that can be weakly referenced)
    meters.transcoding("resize", held)
    values = parsed(families(meters, State()))
    assert values[("wcsvod_sessions", ())] == 3
    assert values[("wcsvod_streams", (("kind", "vod"),))] == 2
    assert values[("wcsvod_viewers", (("provider", "WebRTC"),))] == 4
    assert values[("wcsvod_sent_packets_total", (("provider", "MSE"),))] == 7
    assert values[("wcsvod_sent_bytes_total", (("provider", "MSE"),))] == 700
    assert values[("wcsvod_samples_read_total", (("kind", "video"),))] == 30
    assert values[("wcsvod_failures_total", (("reason", "File not found"),))] == 1
    assert values[("wcsvod_rest_requests_total",
                   (("route", "/rest-api/vod/startup"), ("status", "404")))] == 1
    assert values[("wcsvod_s3_fetched_bytes_total", ())] == 4096
    assert values[("wcsvod_s3_errors_total", ())] == 2
    assert values[("wcsvod_ice_tcp_connections_total", (("outcome", "refused"),))] == 3
    assert values[("wcsvod_transcodes", (("kind", "resize"),))] == 1
    assert values[("wcsvod_reactor_lag_seconds_bucket", (("le", "0.005"),))] == 1
    assert values[("wcsvod_reactor_lag_seconds_bucket", (("le", "+Inf"),))] == 2
    assert values[("wcsvod_reactor_lag_seconds_count", ())] == 2
    del held
    gc.collect()
    assert parsed(families(meters, None))[("wcsvod_transcodes", (("kind", "resize"),))] == 0


def test_workers_families_travel_and_merge_under_a_worker_label():
    one, two = Meters(), Meters()
    one.samples_read["audio"] += 5
    two.samples_read["audio"] += 7
    wire = to_wire(families(two, State()))
    wire = json.loads(json.dumps(wire))  # as a report carries it
    values = parsed(merged([labelled(families(one, State()), {"worker": "1"}),
                            from_wire(wire, {"worker": "2"})]))
    assert values[("wcsvod_samples_read_total", (("kind", "audio"), ("worker", "1")))] == 5
    assert values[("wcsvod_samples_read_total", (("kind", "audio"), ("worker", "2")))] == 7
    assert values[("wcsvod_reactor_lag_seconds_count", (("worker", "2"),))] == 0


def test_reactor_lag_is_how_late_the_probe_ran():
    clock, meters = Clock(), Meters()
    probe = ReactorLag(clock, meters)
    probe.startService()
    clock.advance(LAG_PROBE)  # on time
    clock.advance(LAG_PROBE + 0.2)  # 0.2 s late
    assert sum(meters.lag.counts) == 2 and meters.lag.sum == pytest.approx(0.2)
    probe.stopService()
    assert not clock.getDelayedCalls()


def test_a_stopped_push_stops_counting_as_a_viewer_at_once():
    """A push that ended stays listed a while (its status, why it ended) but is
    no viewer any more, as /metrics's wcsvod_viewers counts them."""
    from types import SimpleNamespace

    from twisted.internet.task import Clock

    from wcs.media.sample import MediaInfo
    from wcs.push.pusher import Push
    from wcs.push.rtmp import target
    from wcs.streams.media_sessions import MediaSession, MediaSessions
    from wcs.server_state import ServerState

    sessions = MediaSessions()
    clock = Clock()
    play = MediaSession("p", "show", False, "WebRTC", "s1", status="PLAYING")
    published = MediaSession("c", "cam", True, "WebRTC", "s2", status="PUBLISHING")
    pushed = MediaSession("r", "show", False, "RTMP", "rest",
                          rtmp_url="rtmp://127.0.0.1/live")
    push = Push(pushed, target(pushed.rtmp_url, "show"), MediaInfo(1.0, None, None),
                clock, lambda _: None, 3, lambda *_: None)
    for media in (play, published, pushed):
        sessions.add(media, lambda info: None, lambda: None)
    state = ServerState(SimpleNamespace(media=sessions), SimpleNamespace(sessions={}),
                        clock)
    assert pushed.status == "PENDING" and not pushed.ended
    assert state.viewers() == {"WebRTC": 1, "MSE": 0, "WHEP": 0, "RTMP": 1, "HLS": 0}
    push.end("STOPPED", "Stopped by rest /terminate")
    assert pushed in sessions.all() and pushed.listed()["status"] == "STOPPED"
    assert state.viewers() == {"WebRTC": 1, "MSE": 0, "WHEP": 0, "RTMP": 0, "HLS": 0}, "not 0"
    failed = MediaSession("f", "show", False, "RTMP", "rest", status="FAILED")
    sessions.add(failed, lambda info: None, lambda: None)
    assert state.viewers()["RTMP"] == 0

