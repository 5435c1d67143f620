"""Publishing with record: true, to an MP4 that plays back as vod://."""

from __future__ import annotations

import av

from testkit.harness import run
from testkit.rtc_client import play
from testkit.rtc_publisher import Published, publish
from wcs.media import boxes, h264


def test_recorded_video_is_byte_identical_and_audio_is_aac(start_server, media, tmp_path):
    folder = tmp_path / "records"
    folder.mkdir()
    server = start_server(media_dir=str(folder))
    sent = run(publish(server.ws_url, "cam 1", media / "baseline.mp4", seconds=4))
    assert sent.statuses == ["PUBLISHING", "UNPUBLISHED"], sent.events
    name = sent.events[-1]["recordName"]
    assert sent.events[0]["recordName"] == name and name.startswith("cam_1-")
    path = folder / name
    assert path.exists() and not list(folder.glob(".*.part"))
    with path.open("rb") as handle:
        kinds = [box.kind for box in boxes.check_layout(handle, path.stat().st_size)]
    assert kinds.index("moov") < kinds.index("mdat"), kinds
    with av.open(str(path)) as container:
        video, audio = container.streams.video[0], container.streams.audio[0]
        assert (video.codec_context.name, audio.codec_context.name) == ("h264", "aac")
        audio_seconds = float(audio.duration * audio.time_base)
        config = h264.parse_avcc(video.codec_context.extradata)
        recorded = [h264.split_avcc(bytes(p), config.length_size)
                    for p in container.demux(video=0) if p.size]
        duration = container.duration / 1e6
    sent_units = [h264.split_annexb(data) for data in sent.sent_video]
    assert recorded == sent_units[: len(recorded)]
    assert len(recorded) >= len(sent_units) - 2, "all but the frames still in flight at stop"
    assert abs(duration - sent.seconds) < 0.5, (duration, sent.seconds)
    assert abs(audio_seconds - sent.seconds) < 0.5, (audio_seconds, sent.seconds)
    # and it plays back as personal VOD
    got = run(play(server.ws_url, f"vod://{name}"))
    assert got.statuses == ["PENDING", "PLAYING", "STOPPED"]
    assert len(got.video) >= len(recorded) - 2


def recorded(folder, name: str) -> tuple[float, int]:
    """(duration in s, video samples) of a record."""
    with av.open(str(folder / name)) as container:
        frames = sum(1 for p in container.demux(video=0) if p.size)
        return container.duration / 1e6, frames


def test_a_pause_in_the_sender_keeps_real_timing(start_server, media, tmp_path):
    server = start_server(media_dir=str(tmp_path))
    sent = run(publish(server.ws_url, "paused", media / "baseline.mp4", seconds=5,
                       gap=(1.5, 3.0)))
    assert sent.statuses == ["PUBLISHING", "UNPUBLISHED"]
    duration, frames = recorded(tmp_path, sent.events[-1]["recordName"])
    assert abs(duration - 5.0) < 0.5, duration  # the 1.5 s gap is kept, not squeezed out
    assert abs(frames - len(sent.sent_video)) <= 2


def test_published_stream_plays_live_by_name(start_server, media, tmp_path):
    import asyncio

    server = start_server(media_dir=str(tmp_path))

    async def both():
        publisher_started = Published()
        publisher = asyncio.ensure_future(publish(server.ws_url, "cam", media / "live.mp4",
                                                  seconds=6, record=False,
                                            result=publisher_started))
        await publisher_started.publishing()
        viewer = await play(server.ws_url, "cam", stop_after=2.5)
        return await publisher, viewer

    sent, got = run(both())
    assert sent.statuses == ["PUBLISHING", "UNPUBLISHED"]
    assert "recordName" not in sent.events[0]
    assert got.statuses == ["PENDING", "PLAYING", "STOPPED"]
    assert len(got.video) > 45
    numbers = got.numbers
    assert numbers == list(range(numbers[0], numbers[0] + len(numbers)))


def test_publisher_stop_stops_its_viewers_and_duplicates_are_refused(start_server, media,
                                                                     tmp_path):
    import asyncio

    server = start_server(media_dir=str(tmp_path))

    async def scene():
        first_started = Published()
        first = asyncio.ensure_future(publish(server.ws_url, "dup", media / "live.mp4",
                                              seconds=4, record=False,
                                            result=first_started))
        await first_started.publishing()
        viewer = asyncio.ensure_future(play(server.ws_url, "dup", timeout=15))
        second = await publish(server.ws_url, "dup", media / "main.mp4", seconds=1)
        return await first, second, await viewer

    first, second, viewer = run(scene())
    assert first.statuses == ["PUBLISHING", "UNPUBLISHED"]
    assert second.statuses == ["FAILED"]
    assert second.events[0]["info"] == "Stream 'dup' is already being published"
    assert viewer.statuses[-1] == "STOPPED" and viewer.infos == ["Stopped by publisher stop"]


def test_dropped_session_still_finalises_the_record(start_server, media, tmp_path):
    server = start_server(media_dir=str(tmp_path))
    sent = run(publish(server.ws_url, "gone", media / "baseline.mp4", seconds=3,
                       drop_socket=True))
    name = sent.events[0]["recordName"]
    import time

    deadline = time.monotonic() + 5
    while not (tmp_path / name).exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    duration, frames = recorded(tmp_path, name)
    assert abs(duration - 3.0) < 0.5 and frames >= len(sent.sent_video) - 2
    got = run(play(server.ws_url, f"vod-live://{name}", stop_after=1))
    assert got.statuses == ["PENDING", "PLAYING", "STOPPED"]


def tiny_disk(folder, options: str) -> list[str]:
    """Run the server in a mount namespace where ``folder`` is a small tmpfs."""
    return ["unshare", "-m", "sh", "-c",
            f'mount -t tmpfs -o {options} wcsvod-test {folder} && exec "$0" "$@"']


def test_a_full_disk_fails_the_publication_and_leaves_no_partial_file(start_server, media,
                                                                     tmp_path):
    folder = tmp_path / "small"
    folder.mkdir()
    server = start_server(media_dir=str(folder), wrap=tiny_disk(folder, "size=160k"),
                          record_min_free_disk="0")  # no floor: the write itself fails
    sent = run(publish(server.ws_url, "big", media / "high.mp4", seconds=5))
    assert sent.statuses[-1] == "FAILED", sent.events
    assert "No space left on device" in sent.events[-1]["info"]
    listing = subprocess_listing(server)
    assert ".part" not in listing and ".mp4" not in listing, listing


def test_a_read_only_media_folder_fails_at_once(start_server, media, tmp_path):
    folder = tmp_path / "readonly"
    folder.mkdir()
    server = start_server(media_dir=str(folder), wrap=tiny_disk(folder, "ro,size=64k"),
                          record_min_free_disk="0")
    sent = run(publish(server.ws_url, "cam", media / "baseline.mp4", seconds=1))
    assert sent.statuses == ["FAILED"]
    assert "Cannot record to" in sent.events[0]["info"]
    assert "Read-only file system" in sent.events[0]["info"]


def test_a_disk_below_the_free_space_floor_refuses_a_recording_at_once(start_server, media,
                                                                       tmp_path):
    folder = tmp_path / "small"
    folder.mkdir()
    server = start_server(media_dir=str(folder), wrap=tiny_disk(folder, "size=4m"),
                          record_min_free_disk="8")
    sent = run(publish(server.ws_url, "cam", media / "baseline.mp4", seconds=1))
    assert sent.statuses == ["FAILED"]
    assert sent.events[0]["info"] == ("Limit reached: free disk space in MiB "
                                      "(record_min_free_disk=8)")
    assert ".part" not in subprocess_listing(server)


def subprocess_listing(server) -> str:
    """What the server sees in its media folder (its tmpfs is private to it)."""
    import subprocess

    pid = server.process.pid
    children = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True)
    target = children.stdout.split()[0] if children.stdout.split() else str(pid)
    media = [line for line in server.config.read_text().splitlines()
             if line.startswith("media_dir=")][0].split("=", 1)[1]
    return subprocess.run(["nsenter", "-t", target, "-m", "ls", "-a", media],
                          capture_output=True, text=True).stdout


def test_a_vp8_only_publisher_is_recorded_as_h264(start_server, media, tmp_path):
    server = start_server(media_dir=str(tmp_path))
    sent = run(publish(server.ws_url, "vp8cam", media / "baseline.mp4", seconds=4, vp8=True))
    assert sent.statuses == ["PUBLISHING", "UNPUBLISHED"], sent.events
    name = sent.events[-1]["recordName"]
    with av.open(str(tmp_path / name)) as container:
        assert sorted(s.codec_context.name for s in container.streams) == ["aac", "h264"]
        duration = container.duration / 1e6
        frames = sum(1 for p in container.demux(video=0) if p.size)
    assert abs(duration - sent.seconds) < 0.7, (duration, sent.seconds)
    assert frames > 90
    assert server.saw("offers VP8 only; it is re-encoded to H.264")


def test_a_recording_that_reaches_record_max_size_is_kept_and_says_why(start_server, tmp_path):
    from tools.makemedia import make_mp4

    folder = tmp_path / "records"
    folder.mkdir()
    clip = make_mp4(tmp_path / "busy.mp4", seconds=6, profile="baseline", bitrate="3M")
    server = start_server(media_dir=str(folder), record_max_size="1")
    sent = run(publish(server.ws_url, "big", clip, seconds=6))
    assert sent.statuses == ["PUBLISHING", "FAILED"], sent.events
    last = sent.events[-1]
    assert last["info"] == "Limit reached: recording size in MiB (record_max_size=1)"
    path = folder / last["recordName"]
    assert 0.5 * 2**20 < path.stat().st_size <= 1.1 * 2**20  # kept, up to the cap
    with av.open(str(path)) as container:
        assert sum(1 for p in container.demux(video=0) if p.size) > 30
