"""Registers ``twistd wcsvod``; the service itself lives in :mod:`wcs.tap`."""

from twisted.application.service import ServiceMaker


class WcsvodMaker(ServiceMaker):
    """twistd reads ``options`` once ``wcsvod`` is chosen, before it installs a
    reactor: the asyncio one (aiortc's loop) goes in first, so no one types
    ``--reactor``. Only then is :mod:`wcs.tap` imported."""

    @property
    def options(self):
        from wcs import aio

        try:
            aio.install_reactor()
        except aio.ReactorError as error:
            raise SystemExit(f"wcsvod: {error}") from None
        return super().options


wcsvod = WcsvodMaker(
    "wcsvod",
    "wcs.tap",
    "Play MP4 files to browsers over WebRTC, speaking the Flashphoner WCS protocol.",
    "wcsvod",
)
