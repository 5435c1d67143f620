"""Registers ``twistd wcsvod``; the service itself lives in :mod:`wcs.tap`."""

from twisted.application.service import ServiceMaker

wcsvod = ServiceMaker(
    "wcsvod",
    "wcs.tap",
    "Play MP4 files to browsers over WebRTC, speaking the Flashphoner WCS protocol.",
    "wcsvod",
)
