"""MSE from a raw client: framing, token matching, backpressure."""

from __future__ import annotations

from testkit.harness import run
from testkit.mse_client import MSE_OFFER, parse_records, watch
from wcs.media.sample import Sample
from wcs.mse.packetizer import MsePacketizer


def test_framing_of_a_whole_play(start_server, media):
    server = start_server(media_dir=str(media))
    got = run(watch(server.ws_url, "vod://main.mp4", seconds=3))
    assert got.statuses == ["PENDING", "PLAYING", "STOPPED"]
    assert "m=video 1 " in got.answer and "m=audio 1 " in got.answer
    kinds = [kind for kind, _, _ in got.order]
    # first a video sequence header, then the keyframe; audio config before audio frames
    assert got.order[0][2][:2] == b"\x17\x00" and got.order[1][2][:2] == b"\x17\x01"
    first_audio = [head for kind, _, head in got.order if kind == 8][:2]
    assert first_audio[0][0] == 0 and first_audio[1][0] == 1
    # a sequence header before every keyframe, and only there
    heads = [head[:2] for kind, _, head in got.order if kind == 9]
    for index, head in enumerate(heads):
        if head == b"\x17\x01":
            assert heads[index - 1] == b"\x17\x00"
    # 3 s of watching, and the 2.5 s sent at once (the SDK's MSE player waits for
    # that much), of a file with a keyframe every 2 s: keyframes at 0, 2 and 4 s
    assert heads.count(b"\x17\x00") == 3
    video_ms = [stamp for kind, stamp, head in got.order if kind == 9 and head[1] == 1]
    assert all(b - a in (33, 34) for a, b in zip(video_ms, video_ms[1:])), "ms timestamps"
    assert kinds.count(9) > 80 and kinds.count(8) > 120


def test_audio_only_answer_rejects_video(start_server, media):
    server = start_server(media_dir=str(media))
    got = run(watch(server.ws_url, "vod://audio-only.mp4", seconds=1))
    assert "m=video 0 " in got.answer and "m=audio 1 " in got.answer
    assert got.records.get(8) and not got.records.get(9)


def test_unknown_token_is_refused_and_closed(start_server, media):
    server = start_server(media_dir=str(media))
    got = run(watch(server.ws_url, "vod://main.mp4", seconds=1, token="not-a-token"))
    assert got.statuses == ["PENDING"], "no PLAYING: the socket was refused and closed"
    assert server.saw("media transport with an unknown token refused")


def test_a_stuck_media_socket_is_cut_back_then_ended(start_server, media, tmp_path):
    from tools.makemedia import make_mp4

    make_mp4(tmp_path / "heavy.mp4", seconds=30, bitrate="6000k", audio=False)
    server = start_server(media_dir=str(tmp_path))
    got = run(watch(server.ws_url, "vod://heavy.mp4", seconds=25, read=False))
    assert got.statuses[:2] == ["PENDING", "PLAYING"]
    assert got.statuses[-1] == "FAILED"
    assert got.infos[-1] == "Viewer too slow: the media connection could not keep up"
    assert server.saw("media socket stuck")


def test_packetizer_unit():
    packer = MsePacketizer(b"\x12\x10")
    key = Sample("video", b"\x00\x00\x00\x01\x67\x42\xc0\x1e\x00\x00\x00\x01\x68\xce"
                 b"\x00\x00\x00\x01\x65\x88", 90000, 90000, 1.0, True, "h264")
    records = parse_records(packer.pack(key))
    assert [(k, ms, body[:2]) for k, ms, body in records] == [
        (9, 1000, b"\x17\x00"), (9, 1000, b"\x17\x01")]
    assert records[1][2][5:] == b"\x00\x00\x00\x02\x65\x88"
    audio = parse_records(packer.pack(Sample("audio", b"AAC", 44100, 44100, 1.0,
                                             codec="aac")))
    assert [body for _, _, body in audio] == [b"\x00\x12\x10", b"\x01AAC"]
    assert packer.pack(Sample("audio", b"opus", 0, 48000, 0.0, codec="opus")) is None
    assert MSE_OFFER.count("m=") == 2


def test_a_published_stream_reaches_mse_with_aac(start_server, media, tmp_path):
    import asyncio

    from testkit.rtc_publisher import Published, publish

    server = start_server(media_dir=str(tmp_path))

    async def both():
        publisher_started = Published()
        publisher = asyncio.ensure_future(publish(server.ws_url, "cam", media / "live.mp4",
                                                  seconds=6, record=False,
                                            result=publisher_started))
        await publisher_started.publishing()
        viewer = await watch(server.ws_url, "cam", seconds=3)
        return await publisher, viewer

    sent, got = run(both())
    assert sent.statuses == ["PUBLISHING", "UNPUBLISHED"]
    assert got.statuses == ["PENDING", "PLAYING", "STOPPED"]
    assert "m=video 1 " in got.answer and "m=audio 1 " in got.answer
    audio = [head for kind, _, head in got.order if kind == 8]
    assert audio[0][0] == 0 and len(audio) > 100, "AudioSpecificConfig, then AAC frames"
    assert got.records.get(9, 0) > 60


def test_a_time_before_zero_is_sent_as_zero_not_wrapped():
    from wcs.mse.packetizer import AUDIO, record

    assert record(AUDIO, -23, b"x")[1:5] == b"\x00\x00\x00\x00"  # AAC priming
    assert record(AUDIO, 1000, b"x")[1:5] == (1000).to_bytes(4, "big")
