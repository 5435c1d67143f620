"""One ``playStream``, whatever the media provider: a player from the
transports, subscribed to its stream once it connects."""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred
from twisted.logger import Logger

from wcs.errors import Conflict, NotFound, Unsupported
from wcs.metrics import METERS
from wcs.signalling import messages
from wcs.signalling.negotiation import Negotiation
from wcs.streams.adaptive import AdaptiveView
from wcs.streams.registry import Stream
from wcs.streams.rendition import Rendition
from wcs.streams.renditions import Renditions
from wcs.streams.stream import PublishedStream, Seeked, VodStream
from wcs.transports.interfaces import Player

log = Logger()


class Playback(Negotiation):
    """From the offer to STOPPED or FAILED."""

    stream: Stream | Rendition | None = None
    player: Player | None = None
    #: where its ladder comes from (set for a play that pinned no size)
    renditions: Renditions | None = None
    #: what it watches through when it adapts to its bandwidth (WebRTC)
    view: AdaptiveView | None = None

    @property
    def transport(self) -> Player | None:
        return self.player

    def opened(self, stream: Stream | Rendition) -> None:
        """The stream exists (at once for files, later for S3): negotiate."""
        if self.done:  # stopped while the source was opening
            stream.unsubscribe(None)
            return
        self.stream = stream
        assert stream.info is not None  # a stream is described before it is opened
        self.media.described(stream.info)
        self.player = self.transports.player(
            self.request.media_provider,
            self.session.id,
            stream.info,
            self.label,
            self._player_state,
            tcp_only=self.request.transport == "TCP",
        )
        self.report("PENDING")
        self.arm_deadline(*self.player.connect_deadline)  # ICE, or the MSE media socket
        answering = self.player.answer(self.request.sdp)
        answering.addCallback(self._answered).addErrback(self.refused)

    def _answered(self, sdp: str) -> None:
        self.send_answer(sdp)
        if not self.done and self.player is not None:
            self.player.answered()

    def _player_state(self, state: str, info: str | None) -> None:
        if self.done:
            return
        if state == "connected":
            self.disarm()
            assert self.stream is not None and self.player is not None
            seekable = self.stream.source if isinstance(self.stream, Rendition) else self.stream
            if isinstance(seekable, VodStream) and not seekable.live:  # the own player's bar
                self.report("PLAYING", duration=round(seekable.info.duration, 3))
            else:
                self.report("PLAYING")
            video = self.stream.info.video if self.stream.info is not None else None
            if video is not None and video.width > 0:  # the SDK's videoResolution()
                self._resized(video.width, video.height)
            if isinstance(self.stream, PublishedStream | VodStream):  # its size may change
                self.stream.watch_size(self._source_resized)
            view = self.view = self._adaptive(self.stream, self.player)
            if view is not None:
                self.player.on_keyframe_request = view.request_keyframe
                view.start()
            else:
                self.player.on_keyframe_request = self.stream.request_keyframe
                self.stream.subscribe(self.player)
        else:
            self.end("STOPPED" if state == "stopped" else "FAILED", info)

    def _adaptive(self, stream: Stream | Rendition, player: Player) -> AdaptiveView | None:
        """The view that moves a WebRTC player along the stream's ladder by its
        bandwidth (None: it watches the stream itself)."""
        if self.renditions is None or isinstance(stream, Rendition):
            return None
        if getattr(player, "on_feedback", None) is None:  # it cannot tell its bandwidth
            return None
        offers = self.renditions.offers(stream)
        if not offers:
            return None
        view = AdaptiveView(player, self.clock, self.label, offers, self._moved)
        player.on_feedback = view.feedback  # type: ignore[attr-defined]
        self.media.rendition = offers[0].name
        return view

    def _moved(self, old: int, new: int) -> None:
        """The view moved: logged, counted, listed, and the page told the size."""
        view = self.view
        if view is None or self.done:
            return
        was, now = view.offers[old], view.offers[new]
        direction = "down" if new > old else "up"
        estimate = view.chooser.estimate(self.clock.seconds())
        log.info(
            "{label}: moved {direction} from {was} to {now} ({width}x{height}; "
            "the browser estimates {kbps} kb/s)",
            label=self.label,
            direction=direction,
            was=was.name,
            now=now.name,
            width=now.size[0],
            height=now.size[1],
            kbps="?" if estimate is None else round(estimate / 1000),
        )
        METERS.abr_moves[(direction, now.name)] += 1
        self.media.rendition = now.name
        self._resized(*now.size)

    def _source_resized(self, width: int, height: int) -> None:
        """The stream's picture changed size: the page's too, unless a rendition's
        picture is what it gets (that keeps its size)."""
        if self.view is None or self.view.index == 0:
            self._resized(width, height)

    def _resized(self, width: int, height: int) -> None:
        """The ``resize`` stream event: the picture's size now."""
        if not self.done:
            self.session.send(
                messages.stream_event(
                    self.request.media_session_id,
                    "resize",
                    {"streamerVideoWidth": width, "streamerVideoHeight": height},
                )
            )

    # --- seek and pause (a personal vod:// play), from its page or from REST

    def _controlled(self) -> VodStream:
        """The file this play reads, if it can be sought and paused now."""
        if self.done:
            raise NotFound(f"the play {self.request.media_session_id} has ended")
        stream = self.stream
        if isinstance(stream, Rendition):  # at another size: its source's reading
            stream = stream.source
        if stream is None or self.media.status not in ("PLAYING", "PAUSED"):
            raise Conflict("the play has not started yet")
        if not isinstance(stream, VodStream):
            raise Unsupported("Seek and pause are for personal vod:// plays: this is a live stream")
        return stream

    def seek(self, position: float) -> Deferred[dict[str, Any]]:
        """Play from the keyframe at or before ``position`` (s); its page gets
        the ``seeked`` stream event (where it went, the timestamp it goes on at)."""
        stream = self._controlled()

        def seeked(result: Seeked) -> dict[str, Any]:
            told = self.controls(stream, result)
            if not self.done:
                self.session.send(
                    messages.stream_event(self.request.media_session_id, "seeked", told)
                )
            return told

        return stream.seek(position).addCallback(seeked)

    def pause(self) -> dict[str, Any]:
        """Stop where it is: status PAUSED."""
        stream = self._controlled()
        stream.pause()
        if self.media.status != "PAUSED":
            self.report("PAUSED")
        return self.controls(stream)

    def resume(self) -> dict[str, Any]:
        """Go on from where it was paused: status PLAYING."""
        stream = self._controlled()
        stream.resume()
        if self.media.status != "PLAYING":
            self.report("PLAYING")
        return self.controls(stream)

    def controls(self, stream: VodStream, seeked: Seeked | None = None) -> dict[str, Any]:
        """What a seek, pause or resume answers (REST) and tells the page."""
        told: dict[str, Any] = {
            "mediaSessionId": self.request.media_session_id,
            "name": self.request.name,
            "status": self.media.status,
            "position": round(seeked.position if seeked else stream.position(), 3),
            "duration": round(stream.info.duration, 3),
        }
        if seeked is not None:  # the MSE records' timestamp (ms) the new picture has
            told["timestamp"] = round(seeked.timestamp * 1000)
        return told

    def release(self) -> None:
        """Leave the stream, close the player, and forget both: the player
        holds a callback to this play, so keeping it would make a cycle."""
        stream, player, view = self.stream, self.player, self.view
        self.stream = self.player = self.view = None
        if isinstance(stream, PublishedStream | VodStream):
            stream.unwatch_size(self._source_resized)
        if view is not None:
            view.leave()
        elif stream is not None:
            stream.unsubscribe(player)
        if player is not None:
            player.close()
