"""The whole server's entries, in memory and in a real Redis: the same steps, the
same answers (names taken once, broadcasts joined, holders, ends)."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest

from wcs.cluster.directory import LocalDirectory
from wcs.cluster.store import MEDIA, PUBLISHED, Entry, Load, Store


class Blocking:
    """A :class:`RedisStore` called as if it answered at once: its steps run on
    an event loop of their own, in a thread."""

    def __init__(self, url: str) -> None:
        from wcs.cluster.redis_store import RedisStore

        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.store = self.call(lambda: RedisStore(url), plain=True)

    def call(self, make: Any, plain: bool = False) -> Any:
        async def step() -> Any:
            value = make()
            return value if plain else await value.asFuture(self.loop)

        return asyncio.run_coroutine_threadsafe(step(), self.loop).result(10)

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.store, name)
        if name == "listen":
            return lambda *args: self.call(lambda: method(*args), plain=True)
        return lambda *args: self.call(lambda: method(*args))

    def close(self) -> None:
        self.call(self.store.close)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


@pytest.fixture(params=["memory", "redis"])
def store(request):
    if request.param == "memory":
        yield Store()
        return
    server = request.getfixturevalue("redis_server")
    server.flush()
    blocking = Blocking(server.url)
    yield blocking
    blocking.close()


def live(uri: str, **fields: Any) -> Entry:
    return Entry(uri, uri=uri, **fields)


def test_a_uri_is_one_broadcast_whoever_starts_it(store):
    first = store.live("a", live("vod-live://x.mp4", start=10.0, has_video=True))
    second = store.live("b", live("vod-live://x.mp4", start=99.0))
    assert second.id == first.id and second.start == 10.0 and second.has_video


def test_a_rest_startup_is_what_plays_of_its_uri_join(store):
    show = store.claim("a", Entry("show", uri="vod-live://x.mp4", persistent=True))
    assert show is not None and show.owner == "a"
    joined = store.live("b", live("vod-live://x.mp4"))
    assert joined.id == show.id and joined.name == "show"


def test_a_name_is_taken_once_anywhere(store):
    assert store.claim("a", Entry("show", uri="vod-live://x.mp4")) is not None
    assert store.claim("b", Entry("show", uri="vod-live://y.mp4")) is None
    assert store.claim("b", Entry("show", kind=PUBLISHED)) is None
    # personal plays are not names: any number of them
    assert store.claim("a", Entry("vod://x.mp4", shared=False)) is not None
    assert store.claim("b", Entry("vod://x.mp4", shared=False)) is not None
    assert len(store.select("vod://x.mp4")) == 2


def test_the_last_holder_to_let_go_ends_an_entry(store):
    entry = store.live("a", live("vod-live://x.mp4"))
    assert store.hold("b", entry.id) is not None
    store.release("a", entry.id)
    assert store.lookup("vod-live://x.mp4") is not None  # b still serves it
    store.release("b", entry.id)
    assert store.lookup("vod-live://x.mp4") is None and store.select() == []
    assert store.hold("c", entry.id) is None  # too late: it has ended
    again = store.live("c", live("vod-live://x.mp4", start=5.0))
    assert again.id != entry.id and again.start == 5.0  # a new broadcast from now


def test_a_publication_ends_with_its_publisher_not_its_relays(store):
    cam = store.claim("a", Entry("cam", kind=PUBLISHED, relay="127.0.0.1:1"))
    store.hold("b", cam.id)
    store.release("b", cam.id)
    assert store.lookup("cam") is not None
    store.hold("b", cam.id)
    store.release("a", cam.id)
    assert store.lookup("cam") is None


def test_viewers_are_counted_on_every_worker_and_a_dead_worker_counts_none(store):
    entry = store.live("a", live("vod-live://x.mp4"))
    store.hold("b", entry.id)
    store.report("a", {entry.id: 3}, Load("a", viewers=3))
    store.report("b", {entry.id: 2, "unknown": 7}, Load("b", viewers=2))
    [listed] = store.select()
    assert listed.total_viewers == 5 and listed.viewers == {"a": 3, "b": 2}
    assert sorted(load.worker for load in store.loads()) == ["a", "b"]
    store.drop("b")
    [listed] = store.select()
    assert listed.viewers == {"a": 3}
    assert [load.worker for load in store.loads()] == ["a"]
    store.drop("a")
    assert store.select() == [] and store.lookup("vod-live://x.mp4") is None


def test_what_is_handed_out_is_a_copy(store):
    entry = store.live("a", live("vod-live://x.mp4"))
    entry.viewers["a"] = 99
    entry.start = -1
    [listed] = store.select()
    assert listed.viewers == {"a": 0} and listed.start != -1


def test_terminate_ends_entries_and_tells_every_listener(store):
    heard: list = []
    store.listen("a", lambda ids, info: heard.append(("a", ids, info)))
    store.listen("b", lambda ids, info: heard.append(("b", ids, info)))
    time.sleep(0.2)  # (Redis: the node's subscription is up)
    entry = store.claim("a", Entry("show", uri="vod-live://x.mp4"))
    assert [e.id for e in store.terminate([entry.id, "gone"], "Stopped by server")] == \
        [entry.id]
    deadline = time.monotonic() + 5
    while len(heard) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert sorted(heard) == [("a", [entry.id], "Stopped by server"),
                             ("b", [entry.id], "Stopped by server")]
    assert store.lookup("show") is None
    assert store.terminate([entry.id], "again") == []


def test_stopping_media_sessions_tells_every_listener_in_their_namespace(store):
    """A page's play is stopped wherever it is; a page chose its id, so the id goes
    marked: it can never end an entry that happens to share it."""
    heard: list = []
    store.listen("a", lambda ids, info: heard.append(("a", ids, info)))
    store.listen("b", lambda ids, info: heard.append(("b", ids, info)))
    time.sleep(0.2)  # (Redis: the node's subscription is up)
    entry = store.claim("a", Entry("show", uri="vod-live://x.mp4"))
    store.stop([entry.id], "Stopped by server")
    deadline = time.monotonic() + 5
    while len(heard) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert sorted(heard) == [("a", [MEDIA + entry.id], "Stopped by server"),
                             ("b", [MEDIA + entry.id], "Stopped by server")]
    assert store.lookup("show") is not None


def test_media_sessions_travel_with_a_workers_load(store):
    media = [{"id": "m1", "name": "cam", "published": True}]
    store.report("a", {}, Load("a", viewers=0, media=media))
    [load] = store.loads()
    assert load.media == media


def test_a_local_directory_is_the_store_for_one_worker():
    directory = LocalDirectory(worker="a")
    heard = []
    directory.listen(lambda ids, info: heard.append((ids, info)))
    entry = directory.claim(Entry("show", uri="vod-live://x.mp4")).result
    assert directory.terminate([entry.id], "Stopped by server").result == [entry]
    assert heard == [([entry.id], "Stopped by server")]


def test_a_dead_nodes_entries_expire_from_redis(redis_server):
    """No report for ``EXPIRY`` seconds: a node that died leaves nothing behind."""
    from wcs.cluster import redis_store

    redis_server.flush()
    blocking = Blocking(redis_server.url)
    try:
        kept = blocking.live("alive", live("vod-live://x.mp4"))
        blocking.claim("dead", Entry("show", uri="vod-live://y.mp4"))
        blocking.report("dead", {}, Load("dead"))
        deadline = time.monotonic() + redis_store.EXPIRY + 3
        while time.monotonic() < deadline:
            blocking.report("alive", {kept.id: 1}, Load("alive", viewers=1))
            if [e.name for e in blocking.select()] == ["vod-live://x.mp4"]:
                break
            time.sleep(1.0)
        assert [e.name for e in blocking.select()] == ["vod-live://x.mp4"]
        assert [load.worker for load in blocking.loads()] == ["alive"]
        assert blocking.claim("other", Entry("show", uri="vod-live://z.mp4")) is not None
    finally:
        blocking.close()


def test_broadcasts_are_capped_for_the_whole_machine():
    from wcs.errors import LimitReached
    from wcs.limits import Limits

    store = Store(Limits(max_broadcasts=3, max_rest_startups=1))
    store.live("1.1", live("vod-live://a.mp4"))
    store.claim("2.2", Entry("show", uri="vod-live://b.mp4", persistent=True))
    with pytest.raises(LimitReached) as startup:
        store.claim("1.1", Entry("show2", uri="vod-live://c.mp4", persistent=True))
    assert "max_rest_startups=1" in startup.value.info
    store.claim("1.1", Entry("me", uri="vod://a.mp4", shared=False))  # a personal play: not one
    store.live("2.2", live("vod-live://a.mp4"))  # joining a running one: not a new one
    store.live("2.2", live("vod-live://c.mp4"))
    with pytest.raises(LimitReached) as broadcasts:
        store.live("1.1", live("vod-live://d.mp4"))
    assert broadcasts.value.info == \
        "Limit reached: vod-live broadcasts running (max_broadcasts=3)"
