"""The local file source: a stream name to a file inside the media folder, safely.

Nothing outside the media folder is ever opened: names are refused before
the file system is asked, and whatever symlinks resolve to is checked again.
"""

from __future__ import annotations

from pathlib import Path

from wcs.media.errors import FILE_NOT_FOUND, MediaError, invalid_name

MAX_NAME = 1024


def resolve(media_dir: Path, name: str) -> Path:
    """The real path of ``name`` under ``media_dir``; refuses anything that escapes."""
    if not name:
        raise invalid_name("no file name")
    if len(name) > MAX_NAME:
        raise invalid_name(f"longer than {MAX_NAME} characters")
    if any(ord(char) < 32 or char == "\x7f" for char in name):
        raise invalid_name("control characters are not allowed")
    if name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        raise invalid_name("absolute paths are not allowed")
    if ".." in name.replace("\\", "/").split("/"):
        raise invalid_name("'..' is not allowed")
    root = media_dir.resolve()
    try:
        real = (root / name).resolve()
    except (OSError, RuntimeError):  # symlink loops, names too long for the OS
        raise MediaError(FILE_NOT_FOUND) from None
    if not real.is_relative_to(root):
        raise invalid_name("it leads outside the media folder")
    if not real.is_file():
        raise MediaError(FILE_NOT_FOUND)
    return real
