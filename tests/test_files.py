"""``python -m wcs inspect`` and ``prepare`` on each kind of file: the
verdicts, what prepare does (and only that), and its outputs judged again."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import av
import pytest

from testkit.harness import REPO
from tools.makemedia import corrupt_audio, make_mp4
from wcs.files.inspect import PLAYS, REENCODED, WILL_NOT_PLAY, inspect
from wcs.files.prepare import CannotPrepare, prepare


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("files")
    made = {
        "good": make_mp4(folder / "good.mp4", seconds=3),
        "moov-at-end": make_mp4(folder / "moov-at-end.mp4", seconds=3, faststart=False),
        "b-frames": make_mp4(folder / "b-frames.mp4", seconds=3, profile="high", bframes=3),
        "video-only": make_mp4(folder / "video-only.mp4", seconds=3, audio=False),
    }
    corrupt_audio(made["good"], folder / "bad-aac.mp4", frames=5)
    made["bad-aac"] = folder / "bad-aac.mp4"
    whole = made["good"].read_bytes()
    (folder / "truncated.mp4").write_bytes(whole[:len(whole) // 2])
    made["truncated"] = folder / "truncated.mp4"
    (folder / "not-mp4.mp4").write_text("hello\n")
    made["not-mp4"] = folder / "not-mp4.mp4"
    return made


def python_m_wcs(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "wcs", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=120)


def test_each_kind_of_file_gets_its_verdict(files):
    reports = {kind: inspect(path) for kind, path in files.items()}
    assert reports["good"].verdict == PLAYS and reports["good"].faststart
    assert reports["good"].video.startswith("H.264 Main") and reports["good"].width == 640
    assert reports["good"].audio == "AAC 44100 Hz stereo" and not reports["good"].notes
    assert reports["moov-at-end"].verdict == PLAYS and not reports["moov-at-end"].faststart
    assert "moov after mdat" in reports["moov-at-end"].notes[0]
    assert reports["b-frames"].verdict == REENCODED and reports["b-frames"].b_frames
    assert reports["b-frames"].video.startswith("H.264 High")
    assert reports["video-only"].verdict == PLAYS and reports["video-only"].audio == ""
    assert reports["bad-aac"].verdict == PLAYS and reports["bad-aac"].bad_audio_frames == 5
    assert reports["truncated"].verdict == WILL_NOT_PLAY
    assert "incomplete" in reports["truncated"].reason or "past" in reports["truncated"].reason
    assert reports["not-mp4"].verdict == WILL_NOT_PLAY
    assert reports["not-mp4"].reason.startswith("File has wrong format")


def test_inspect_on_the_command_line_exits_non_zero_if_any_will_not_play(files):
    fine = python_m_wcs("inspect", str(files["good"]), str(files["b-frames"]))
    assert fine.returncode == 0, fine.stderr
    assert f"{files['b-frames']}: plays with re-encode (B-frames" in fine.stdout
    bad = python_m_wcs("inspect", "--json", str(files["good"]), str(files["truncated"]))
    assert bad.returncode == 1
    verdicts = [json.loads(line)["verdict"] for line in bad.stdout.splitlines()]
    assert verdicts == [PLAYS, WILL_NOT_PLAY]


def packets(path: Path, kind: str) -> list[bytes]:
    with av.open(str(path)) as container:
        stream = getattr(container.streams, kind)[0]
        return [bytes(p) for p in container.demux(stream) if p.size]


def test_a_misplaced_moov_is_moved_and_every_sample_copied(files, tmp_path):
    out = tmp_path / "fixed.mp4"
    done = prepare(files["moov-at-end"], out)
    assert done == ["moov first (faststart); samples copied as they are",
                    "video copied as it is", "audio copied as it is"]
    for kind in ("video", "audio"):
        assert packets(out, kind) == packets(files["moov-at-end"], kind)
    report = inspect(out)
    assert report.verdict == PLAYS and report.faststart and not report.notes


def test_b_frames_are_removed_and_bad_audio_repaired_only_when_needed(files, tmp_path):
    fixed = tmp_path / "no-b.mp4"
    done = prepare(files["b-frames"], fixed)
    assert done[1].startswith("video re-encoded without B-frames") and \
        done[2] == "audio copied as it is"
    assert packets(fixed, "audio") == packets(files["b-frames"], "audio")
    report = inspect(fixed)
    assert report.verdict == PLAYS and not report.b_frames
    assert abs(report.duration - 3) < 0.2
    repaired = tmp_path / "aac.mp4"
    done = prepare(files["bad-aac"], repaired)
    assert done[1] == "video copied as it is"
    assert done[2] == "audio re-encoded: 5 undecodable AAC frames left out"
    assert packets(repaired, "video") == packets(files["bad-aac"], "video")
    assert inspect(repaired).bad_audio_frames == 0


def test_what_cannot_be_prepared_says_why(files, tmp_path):
    with pytest.raises(CannotPrepare, match="File has wrong format"):
        prepare(files["not-mp4"], tmp_path / "x.mp4")
    with pytest.raises(CannotPrepare, match="another file"):
        prepare(files["good"], files["good"])
    failed = python_m_wcs("prepare", str(files["truncated"]), str(tmp_path / "y.mp4"))
    assert failed.returncode == 1 and "prepare:" in failed.stderr
    assert not (tmp_path / "y.mp4").exists()
    ok = python_m_wcs("prepare", str(files["moov-at-end"]), str(tmp_path / "z.mp4"))
    assert ok.returncode == 0 and "moov first" in ok.stdout


def test_prepared_files_play_through_the_server_as_they_are(files, tmp_path, start_server):
    from testkit.harness import run
    from testkit.rtc_client import play

    folder = tmp_path / "served"
    folder.mkdir()
    (folder / "original.mp4").write_bytes(files["b-frames"].read_bytes())
    prepare(files["b-frames"], folder / "prepared.mp4")
    server = start_server(media_dir=str(folder))
    async def both() -> list:
        return await asyncio.gather(play(server.ws_url, "vod://original.mp4"),
                                    play(server.ws_url, "vod://prepared.mp4"))

    original, prepared = run(both())
    assert server.saw("vod://original.mp4: B-frames: its video is re-encoded")
    assert prepared.statuses[-1] == "STOPPED" and len(prepared.video) >= 80
    assert len(prepared.video) >= len(original.video) - 2
    assert "vod://prepared.mp4: B-frames" not in server.log()
