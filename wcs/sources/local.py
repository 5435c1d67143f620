"""The local file source: a location to a file inside the media folder, safely.

Nothing outside the media folder is ever opened: names are refused before
the file system is asked, and whatever symlinks resolve to is checked again.
"""

from __future__ import annotations

from pathlib import Path

from wcs.errors import InvalidName, NotFound


def resolve(media_dir: Path, name: str) -> Path:
    """The real path of ``name`` under ``media_dir``; refuses anything that escapes."""
    if not name:
        raise InvalidName.because("no file name")
    if any(ord(char) < 32 or char == "\x7f" for char in name):
        raise InvalidName.because("control characters are not allowed")
    if name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        raise InvalidName.because("absolute paths are not allowed")
    parts = name.replace("\\", "/").split("/")
    if ".." in parts:
        raise InvalidName.because("'..' is not allowed")
    if any(part.startswith(".") and part != "." for part in parts):
        raise InvalidName.because("hidden files are not allowed")
    root = media_dir.resolve()
    try:
        real = (root / name).resolve()
    except (OSError, RuntimeError):  # symlink loops, names too long for the OS
        raise NotFound() from None
    if not real.is_relative_to(root):
        raise InvalidName.because("it leads outside the media folder")
    try:
        if not real.is_file():
            raise NotFound()
    except OSError:  # a name part too long for the file system, and the like
        raise NotFound() from None
    return real
