"""The local source's one rule: nothing outside the media folder is opened."""

from __future__ import annotations

import os

import pytest

from wcs.errors import InvalidName, NotFound
from wcs.sources import local


@pytest.fixture
def folder(tmp_path):
    media = tmp_path / "media"
    (media / "sub").mkdir(parents=True)
    (media / "a.mp4").write_bytes(b"x")
    (media / "sub" / "b.mp4").write_bytes(b"x")
    (tmp_path / "secret.mp4").write_bytes(b"secret")
    os.symlink("a.mp4", media / "inside.mp4")
    os.symlink(tmp_path / "secret.mp4", media / "out.mp4")
    os.symlink(tmp_path, media / "up")
    os.symlink("loop", media / "loop")
    return media


def test_files_inside(folder):
    assert local.resolve(folder, "a.mp4") == (folder / "a.mp4").resolve()
    assert local.resolve(folder, "sub/b.mp4") == (folder / "sub" / "b.mp4").resolve()
    assert local.resolve(folder, "inside.mp4") == (folder / "a.mp4").resolve()


@pytest.mark.parametrize("name, reason", [
    ("", "no file name"),
    ("/etc/passwd", "absolute paths are not allowed"),
    ("\\etc\\passwd", "absolute paths are not allowed"),
    ("C:/x.mp4", "absolute paths are not allowed"),
    ("../secret.mp4", "'..' is not allowed"),
    ("sub/../../secret.mp4", "'..' is not allowed"),
    ("..\\secret.mp4", "'..' is not allowed"),
    ("a\x00.mp4", "control characters are not allowed"),
    ("a\x7f.mp4", "control characters are not allowed"),
    (".x.mp4.part", "hidden files are not allowed"),
    ("sub/.b.mp4", "hidden files are not allowed"),
    ("out.mp4", "it leads outside the media folder"),
    ("up/secret.mp4", "it leads outside the media folder"),
])
def test_escapes_are_refused_before_anything_is_opened(folder, name, reason):
    with pytest.raises(InvalidName) as refused:
        local.resolve(folder, name)
    assert refused.value.info == f"Invalid stream name: {reason}"


@pytest.mark.parametrize("name", ["absent.mp4", "sub", "loop", "%2e%2e/secret.mp4",
                                  "a/" * 300 + "x.mp4", "a" * 1000 + ".mp4"])
def test_what_is_not_a_file_inside_is_not_found(folder, name):
    with pytest.raises(NotFound) as refused:
        local.resolve(folder, name)
    assert refused.value.info == "File not found"
