"""The transports front doors attach to streams: made here, on request.

This is the one place that knows which class serves which media provider
(WebRTC through aiortc, MSE over the SDK's media socket) and how records
are named; front doors only see :mod:`wcs.transports.interfaces`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from wcs.errors import Unsupported
from wcs.limits import Limits
from wcs.media.sample import MediaInfo, Sample
from wcs.mse.channels import MediaChannels
from wcs.mse.viewer import MseViewer
from wcs.recording.recorder import MIB, Recorder, record_name
from wcs.transports.interfaces import OnState, Player
from wcs.webrtc import ice
from wcs.webrtc.icetcp import IceTcpServer
from wcs.webrtc.publisher import WebRTCPublisher
from wcs.webrtc.rtpstream import NATIVE_UNUSABLE, SendPath
from wcs.webrtc.viewer import WebRTCViewer

log = Logger()


class TransportFactory:
    """WebRTC and MSE players, WebRTC publishers, and recorders into ``record_dir``.

    ``announced_ips`` are the addresses ICE offers (WCS's ``ip``; empty: all
    of the machine's); records are named by ``record_template``; ``fast_sender``
    false sends WebRTC through aiortc's own per-viewer senders; ``send_path`` says
    how the fast sender sends (UDP GSO, its own SRTP).
    """

    play_providers: tuple[str, ...] = ("WebRTC", "MSE")
    publish_providers: tuple[str, ...] = ("WebRTC",)

    def __init__(
        self,
        clock: IReactorTime,
        record_dir: Path,
        record_template: str,
        announced_ips: Sequence[str] = (),
        fast_sender: bool = True,
        send_path: SendPath = SendPath(),
        limits: Limits = Limits(),
        ice_tcp: IceTcpServer | None = None,
    ) -> None:
        self.clock = clock
        self.ice_tcp = ice_tcp
        self.tcp_offered = ice_tcp is not None
        self.limits = limits
        self.fast_sender = fast_sender
        self.send_path = send_path
        self.record_dir = record_dir
        self.record_template = record_template
        self.channels = MediaChannels()
        if fast_sender and NATIVE_UNUSABLE:
            log.warn("WebRTC sender: {why}", why=NATIVE_UNUSABLE)
        if not ice.announce(announced_ips):
            log.warn(
                "this machine has no address to offer browsers over WebRTC (only "
                "loopback): set ip= in flashphoner.properties, or every WebRTC play "
                'fails with "{info}"',
                info=ice.NO_ADDRESS,
            )

    def player(
        self,
        provider: str,
        session_id: str,
        info: MediaInfo,
        label: str,
        on_state: OnState,
        tcp_only: bool = False,
    ) -> Player:
        if provider == "WebRTC":
            return WebRTCViewer(
                info,
                label,
                on_state,
                fast=self.fast_sender,
                path=self.send_path,
                ice_tcp=self.ice_tcp,
                tcp_only=tcp_only and self.ice_tcp is not None,
            )
        if provider == "MSE":
            return MseViewer(self.channels, session_id, info, label, self.clock, on_state)
        raise Unsupported(f"Media provider {provider} is not supported")

    def publisher(
        self,
        label: str,
        on_sample: Callable[[Sample], None],
        on_state: OnState,
        tcp_only: bool = False,
    ) -> WebRTCPublisher:
        return WebRTCPublisher(
            label,
            on_sample,
            on_state,
            ice_tcp=self.ice_tcp,
            tcp_only=tcp_only and self.ice_tcp is not None,
        )

    def recorder(
        self, stream_name: str, media_session_id: str, info: MediaInfo, on_state: OnState
    ) -> Recorder:
        name = record_name(self.record_template, stream_name, media_session_id, self.record_dir)
        return Recorder(
            self.record_dir,
            name,
            info,
            f"record {name}",
            on_state,
            max_size=self.limits.record_max_size * MIB,
            min_free=self.limits.record_min_free_disk * MIB,
        )

    def media_channel(self, session_id: str, channel: Any) -> None:
        self.channels.arrived(session_id, channel)

    def media_channel_closed(self, session_id: str, channel: Any) -> None:
        self.channels.gone(session_id, channel)

    def session_closed(self, session_id: str) -> None:
        self.channels.forget(session_id)
