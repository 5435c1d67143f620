"""Errors a viewer can be told about, with WCS's standard ``info`` strings."""

FILE_NOT_FOUND = "File not found"
WRONG_FORMAT = "File has wrong format"
INVALID_NAME = "Invalid stream name"


class MediaError(Exception):
    """A stream that cannot be played; ``info`` goes to the viewer as is."""

    def __init__(self, info: str) -> None:
        super().__init__(info)
        self.info = info


def wrong_format(reason: str) -> MediaError:
    return MediaError(f"{WRONG_FORMAT}: {reason}")


def invalid_name(reason: str) -> MediaError:
    return MediaError(f"{INVALID_NAME}: {reason}")
