"""The whole server's entries: names taken once, broadcasts joined, holders, ends."""

from __future__ import annotations

from wcs.cluster.directory import LocalDirectory
from wcs.cluster.store import PUBLISHED, Entry, Load, Store


def test_a_uri_is_one_broadcast_whoever_starts_it():
    store = Store()
    first = store.live("a", Entry("vod-live://x.mp4", uri="vod-live://x.mp4", start=10.0))
    second = store.live("b", Entry("vod-live://x.mp4", uri="vod-live://x.mp4", start=99.0))
    assert second.id == first.id and second.start == 10.0  # b reads a's timeline
    assert store.holders[first.id] == {"a", "b"}


def test_a_rest_startup_is_what_plays_of_its_uri_join():
    store = Store()
    show = store.claim("a", Entry("show", uri="vod-live://x.mp4", persistent=True))
    assert show is not None
    joined = store.live("b", Entry("vod-live://x.mp4", uri="vod-live://x.mp4"))
    assert joined.id == show.id and joined.name == "show"


def test_a_name_is_taken_once_anywhere():
    store = Store()
    assert store.claim("a", Entry("show", uri="vod-live://x.mp4")) is not None
    assert store.claim("b", Entry("show", uri="vod-live://y.mp4")) is None
    assert store.claim("b", Entry("show", kind=PUBLISHED)) is None
    # personal plays are not names: any number of them
    assert store.claim("a", Entry("vod://x.mp4", shared=False)) is not None
    assert store.claim("b", Entry("vod://x.mp4", shared=False)) is not None
    assert len(store.select(name="vod://x.mp4")) == 2


def test_the_last_holder_to_let_go_ends_an_entry():
    store = Store()
    entry = store.live("a", Entry("vod-live://x.mp4", uri="vod-live://x.mp4"))
    assert store.hold("b", entry.id) is not None
    store.release("a", entry.id)
    assert store.lookup("vod-live://x.mp4") is not None  # b still serves it
    store.release("b", entry.id)
    assert store.lookup("vod-live://x.mp4") is None and store.uris == {}
    assert store.hold("c", entry.id) is None  # too late: it has ended
    again = store.live("c", Entry("vod-live://x.mp4", uri="vod-live://x.mp4", start=5.0))
    assert again.id != entry.id and again.start == 5.0  # a new broadcast from now


def test_a_publication_ends_with_its_publisher_not_its_relays():
    store = Store()
    cam = store.claim("a", Entry("cam", kind=PUBLISHED, relay="127.0.0.1:1"))
    store.hold("b", cam.id)
    store.release("b", cam.id)
    assert store.lookup("cam") is not None
    store.hold("b", cam.id)
    store.release("a", cam.id)
    assert store.lookup("cam") is None


def test_viewers_are_counted_on_every_worker_and_a_dead_worker_counts_none():
    store = Store()
    entry = store.live("a", Entry("vod-live://x.mp4", uri="vod-live://x.mp4"))
    store.hold("b", entry.id)
    store.report("a", {entry.id: 3}, Load("a", viewers=3))
    store.report("b", {entry.id: 2, "unknown": 7}, Load("b", viewers=2))
    [listed] = store.select()
    assert listed.total_viewers == 5 and listed.viewers == {"a": 3, "b": 2}
    store.drop("b")
    [listed] = store.select()
    assert listed.viewers == {"a": 3} and set(store.loads) == {"a"}
    store.drop("a")
    assert store.select() == [] and store.names == {}


def test_what_is_handed_out_is_a_copy():
    store = Store()
    entry = store.live("a", Entry("vod-live://x.mp4", uri="vod-live://x.mp4"))
    entry.viewers["a"] = 99
    entry.start = -1
    [listed] = store.select()
    assert listed.viewers == {} and listed.start != -1


def test_terminate_ends_entries_for_every_worker():
    directory = LocalDirectory(worker="a")
    heard = []
    directory.listen(lambda ids, info: heard.append((ids, info)))
    entry = directory.claim(Entry("show", uri="vod-live://x.mp4")).result
    assert directory.terminate([entry.id, "gone"], "Stopped by server").result == [entry]
    assert heard == [([entry.id], "Stopped by server")]
    assert directory.lookup("show").result is None
    assert directory.terminate([entry.id], "again").result == [] and len(heard) == 1
