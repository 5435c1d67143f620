"""Record names and the /client/records/ door."""

from __future__ import annotations

import datetime
import os

from testkit.rest_client import http_status as status
from wcs.recording.recorder import record_name

NOON = datetime.datetime(2026, 11, 21, 12, 0, 0, tzinfo=datetime.timezone.utc)


def test_record_names_are_safe_and_never_overwrite(tmp_path):
    first = record_name("{streamName}-{startTime}", "../my cam/ä", "id", tmp_path, NOON)
    assert first == "my_cam__-20261121-120000.mp4"
    (tmp_path / first).write_bytes(b"x")
    (tmp_path / ".my_cam__-20261121-120000-1.mp4.part").write_bytes(b"x")
    assert record_name("{streamName}-{startTime}", "../my cam/ä", "id", tmp_path,
                       NOON) == "my_cam__-20261121-120000-2.mp4"
    assert record_name("{mediaSessionId}", "x", "abc-1", tmp_path, NOON) == "abc-1.mp4"
    assert record_name("{streamName}", "...", "m", tmp_path, NOON) == "record.mp4"


def test_records_door_serves_finished_mp4_files_only(start_server, media, tmp_path):
    folder = tmp_path / "records"
    folder.mkdir()
    (folder / "done.mp4").write_bytes((media / "main.mp4").read_bytes())
    (folder / ".busy.mp4.part").write_bytes(b"partial")
    (folder / "notes.txt").write_text("private")
    (folder / "sub").mkdir()
    (folder / "sub" / "x.mp4").write_bytes(b"x")
    secret = tmp_path / "secret.mp4"
    secret.write_bytes(b"secret")
    os.symlink(secret, folder / "link.mp4")
    server = start_server(media_dir=str(folder))
    base = f"{server.http_url}/client/records/"
    assert status(base + "done.mp4") == 200
    for name in ("", ".busy.mp4.part", "notes.txt", "sub", "sub/x.mp4", "link.mp4",
                 "..%2Fsecret.mp4", "absent.mp4"):
        assert status(base + name) == 404, name
