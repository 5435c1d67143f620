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
