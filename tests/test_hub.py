"""Workers and their supervisor's store over AMP, in memory (Twisted's iosim)."""

from __future__ import annotations

from twisted.test import iosim

from wcs.cluster.hub import Hub, HubDirectory
from wcs.cluster.store import PUBLISHED, Entry, Load


class World:
    def __init__(self, workers: int = 2) -> None:
        self.hub = Hub()
        self.lost: list[str] = []
        self.ended: list[tuple[str, list[str], str]] = []
        self.directories: list[HubDirectory] = []
        self.pumps: list[iosim.IOPump] = []
        for index in range(1, workers + 1):
            worker = f"{index}.{index}"
            directory = HubDirectory(worker, lambda w=worker: self.lost.append(w))
            directory.listen(lambda ids, info, w=worker: self.ended.append((w, ids, info)))
            _, _, pump = iosim.connectedServerAndClient(
                self.hub.protocol, lambda d=directory: d, greet=False)
            pump.flush()
            self.directories.append(directory)
            self.pumps.append(pump)

    def flush(self) -> None:
        for _ in range(3):
            for pump in self.pumps:
                pump.flush()

    def result(self, deferred):
        self.flush()
        got = []
        deferred.addBoth(got.append)
        assert got, "no answer"
        return got[0]


def test_two_workers_agree_on_names_and_timelines():
    world = World()
    one, two = world.directories
    first = world.result(one.live(Entry("vod-live://x.mp4", uri="vod-live://x.mp4",
                                        start=100.0, has_video=True)))
    second = world.result(two.live(Entry("vod-live://x.mp4", uri="vod-live://x.mp4",
                                         start=200.0)))
    assert second.id == first.id and second.start == 100.0 and second.has_video
    assert world.result(one.claim(Entry("cam", kind=PUBLISHED, relay="h:1"))) is not None
    assert world.result(two.claim(Entry("cam", kind=PUBLISHED))) is None
    assert world.result(two.lookup("cam")).relay == "h:1"
    assert world.hub.store.holders[first.id] == {"1.1", "2.2"}


def test_reports_and_listings_cross_the_wire_however_long():
    world = World()
    one, two = world.directories
    ids = [world.result(one.claim(Entry(f"stream-{n:05d}-" + "x" * 200,
                                        uri=f"vod-live://{n}.mp4"))).id
           for n in range(400)]  # about 200 KiB of JSON: several AMP values
    one.report({entry_id: 1 for entry_id in ids}, Load("1.1", viewers=400))
    listed = world.result(two.select())
    assert len(listed) == 400 and sum(e.total_viewers for e in listed) == 400
    loads = world.result(two.loads())
    assert [(load.worker, load.viewers) for load in loads] == [("1.1", 400)]


def test_terminate_reaches_every_worker():
    world = World()
    one, two = world.directories
    show = world.result(one.claim(Entry("show", uri="vod-live://x.mp4", persistent=True)))
    world.result(two.hold(show.id))
    ended = world.result(two.terminate([show.id], "Stopped by server"))
    world.flush()
    assert [entry.id for entry in ended] == [show.id]
    assert sorted(world.ended) == [("1.1", [show.id], "Stopped by server"),
                                   ("2.2", [show.id], "Stopped by server")]
    assert world.result(one.lookup("show")) is None


def test_stopping_a_media_session_reaches_every_worker():
    world = World()
    one, _ = world.directories
    one.stop(["page-id"], "Stopped by server")
    world.flush()
    assert sorted(world.ended) == [("1.1", ["media:page-id"], "Stopped by server"),
                                   ("2.2", ["media:page-id"], "Stopped by server")]


def test_a_worker_that_goes_lets_go_of_everything_and_hears_so():
    world = World()
    one, two = world.directories
    cam = world.result(one.claim(Entry("cam", kind=PUBLISHED)))
    live = world.result(one.live(Entry("vod-live://x.mp4", uri="vod-live://x.mp4")))
    world.result(two.hold(live.id))
    world.pumps[0].server.transport.loseConnection()  # the supervisor's end of worker 1
    world.flush()
    assert world.lost == ["1.1"]
    assert world.result(two.lookup("cam")) is None  # its publication ended with it
    assert world.result(two.lookup("vod-live://x.mp4")).id == live.id  # 2 still serves it
    assert "1.1" not in world.hub.workers and cam.id not in world.hub.store.entries


def test_session_caps_count_every_workers_sessions_and_a_dead_workers_go():
    from wcs.cluster.admissions import Admissions

    world = World()
    world.hub.admissions = Admissions(max_sessions=100, max_sessions_per_address=3)
    one, two = world.directories
    answers = [world.result(directory.enter("10.1.1.1")) for directory in (one, two, one, two)]
    assert answers[:3] == ["", "", ""]
    assert answers[3].endswith("(max_sessions_per_address=3)")
    two.leave("10.1.1.1")
    world.flush()
    assert world.result(two.enter("10.1.1.1")) == ""
    world.pumps[0].server.transport.loseConnection()  # worker 1 dies with its two sessions
    world.flush()
    assert world.hub.admissions.open_from("10.1.1.1") == 1


def test_a_question_reaches_the_worker_it_is_for_and_a_refusal_comes_back_as_itself():
    from wcs.errors import NotFound, Unsupported

    world = World()
    one, two = world.directories
    two.answer("square", lambda argument: {"n": argument["n"] ** 2})

    def refuse(_argument):
        raise Unsupported("No picture: the stream has no video")

    two.answer("picture", refuse)
    assert world.result(one.ask("2.2", "square", {"n": 7})) == {"n": 49}
    failure = world.result(one.ask("2.2", "picture", {}))
    assert failure.check(Unsupported) and failure.value.info == \
        "No picture: the stream has no video"
    gone = world.result(one.ask("9.9", "square", {"n": 1}))
    assert gone.check(NotFound) and "9.9" in gone.value.info
    unknown = world.result(one.ask("2.2", "nothing", {}))
    assert unknown.check(NotFound)


def test_a_refusal_crosses_with_what_it_carries():
    """An access refusal's reason (its REST detail) and a taken name come back too:
    without them its ``detail`` raised on the asking side, and the HTTP answer was
    never written (a WHEP DELETE of another worker's session hung)."""
    from wcs.errors import AccessRefused, NameTaken

    world = World()
    one, two = world.directories

    def refuse(argument):
        if argument["kind"] == "access":
            raise AccessRefused("the session's URL needs its token")
        raise NameTaken("Stream 'cam' is already being published", "cam")

    two.answer("refuse", refuse)
    access = world.result(one.ask("2.2", "refuse", {"kind": "access"}))
    assert access.check(AccessRefused)
    assert access.value.detail == "Restricted access: the session's URL needs its token"
    taken = world.result(one.ask("2.2", "refuse", {"kind": "name"}))
    assert taken.check(NameTaken) and taken.value.name == "cam"


def test_a_cap_of_the_store_is_a_refusal_on_the_worker_not_a_lost_supervisor():
    from wcs.cluster.store import Store
    from wcs.errors import LimitReached
    from wcs.limits import Limits

    world = World()
    world.hub.store = Store(Limits(max_broadcasts=1))
    one, two = world.directories
    world.result(one.live(Entry("vod-live://a.mp4", uri="vod-live://a.mp4")))
    refused = world.result(two.live(Entry("vod-live://b.mp4", uri="vod-live://b.mp4")))
    assert refused.check(LimitReached)
    assert refused.value.info == "Limit reached: vod-live broadcasts running (max_broadcasts=1)"
    assert world.lost == []


def test_a_connection_for_a_worker_that_is_not_running_is_refused_and_its_copy_closed():
    import os

    world = World()
    one, _ = world.directories
    reading, writing = os.pipe()
    os.close(writing)
    protocol = world.hub.workers["1.1"]
    answer = protocol.hand_off(worker="7.7", socket=reading, family=2, handshake=b"",
                               token="t@7.7", leftover=b"", address="a")
    assert answer == {"why": "worker 7.7 is not running"}
    try:
        os.fstat(reading)
    except OSError:
        pass
    else:
        raise AssertionError("the supervisor kept its copy of the descriptor")
