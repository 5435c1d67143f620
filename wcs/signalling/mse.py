"""``playStream`` with ``mediaProvider: "MSE"``: an answer that only says which
kinds flow, then media on the second WebSocket the SDK opens with
``connectMediaTransport {authToken}``."""

from __future__ import annotations

from collections.abc import Callable

from twisted.internet.interfaces import IReactorTime

from wcs.media.sample import MediaInfo
from wcs.mse.viewer import MediaChannel, MseViewer
from wcs.signalling.messages import StreamRequest
from wcs.signalling.negotiation import Negotiation
from wcs.signalling.session import Session
from wcs.streams.registry import VodStream


def answer_sdp(info: MediaInfo) -> str:
    """The SDK reads only whether each m-line's port is non-zero (§4)."""
    profile = info.video.profile_level_id if info.video else "42e01f"
    return "\r\n".join([
        "v=0", "o=- 0 0 IN IP4 0.0.0.0", "s=wcsvod", "t=0 0",
        f"m=video {1 if info.video else 0} RTP/AVP 112", "a=rtpmap:112 H264/90000",
        f"a=fmtp:112 packetization-mode=1;profile-level-id={profile}", "a=sendonly",
        f"m=audio {1 if info.audio else 0} RTP/AVP 108",
        "a=rtpmap:108 mpeg4-generic/48000/2", "a=sendonly", ""])


class MsePlayback(Negotiation):
    """From the offer to STOPPED, with the media on the session's media socket."""

    def __init__(self, session: Session, request: StreamRequest, clock: IReactorTime,
                 on_done: Callable[[MsePlayback], None],
                 wait_for_channel: Callable[[MsePlayback], None]) -> None:
        super().__init__(session, request, clock, on_done)
        self._wait_for_channel = wait_for_channel
        self.stream: VodStream | None = None
        self.viewer: MseViewer | None = None

    def opened(self, stream: VodStream) -> None:
        self.stream = stream
        if self.done:
            stream.unsubscribe(None)
            return
        self.session.report_stream(self.request, "PENDING")
        self.arm_ice_timeout()  # the media socket must come, as ICE must connect
        self.send_answer(answer_sdp(stream.info))
        self._wait_for_channel(self)

    def attach(self, channel: MediaChannel) -> None:
        """The SDK's media socket arrived: PLAYING, then samples."""
        if self.done or self.stream is None:
            return
        self.disarm()
        self.viewer = MseViewer(channel, self.stream.info,
                                f"{self.request.name} [{self.request.media_session_id[:8]}]",
                                self._viewer_state)
        self.session.report_stream(self.request, "PLAYING")
        self.stream.subscribe(self.viewer)

    def _viewer_state(self, state: str, info: str | None) -> None:
        self.end("STOPPED" if state == "stopped" else "FAILED", info)

    def release(self) -> None:
        if self.stream is not None:
            self.stream.unsubscribe(self.viewer)
        if self.viewer is not None:
            self.viewer.close()
