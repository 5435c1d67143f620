"""One ``publishStream``: a page's camera in, a live stream out, and a
recording of it when ``record`` is true.

PUBLISHING carries ``recordName``; UNPUBLISHED is sent once the file is
complete under its final name, so the page's download link works at once.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred
from twisted.python.failure import Failure

from wcs.errors import WcsError
from wcs.media.sample import MediaInfo, Sample
from wcs.push.pushes import Pushes
from wcs.signalling.negotiation import Negotiation
from wcs.streams.registry import StreamRegistry
from wcs.streams.stream import PublishedStream
from wcs.transports.interfaces import Publisher, Recorder


class Publication(Negotiation):
    """From the offer to UNPUBLISHED (or FAILED), releasing everything once."""

    publisher: Publisher | None = None
    stream: PublishedStream | None = None
    recorder: Recorder | None = None
    #: where a publication with ``rtmpUrl`` is sent on (the pushes service)
    pushes: Pushes | None = None

    @property
    def transport(self) -> Publisher | None:
        return self.publisher

    def start(self, registry: StreamRegistry) -> None:
        """Answer the offer; the stream is registered once the answer is ready."""
        self.registry = registry
        try:
            registry.check_publishable(self.request.name)
        except WcsError as error:
            self.cause = error
            self.end("FAILED", error.info)
            return
        self.publisher = self.transports.publisher(
            f"publish {self.request.name!r}",
            self._sample,
            self._state,
            tcp_only=self.request.transport == "TCP",
        )
        self.arm_deadline(*self.publisher.connect_deadline)
        answering = self.publisher.answer(self.request.sdp)
        answering.addCallback(self._answered).addErrback(self.refused)

    def _answered(self, sdp: str) -> None:
        if self.done:
            return
        assert self.publisher is not None and self.publisher.info is not None
        info = self.publisher.info
        self.media.described(info)
        publishing = self.registry.publish(self.request.name, info, self.publisher.request_keyframe)
        publishing.addCallback(self._published, info, sdp).addErrback(self.refused)

    def _published(self, stream: PublishedStream, info: MediaInfo, sdp: str) -> None:
        """The name is ours everywhere: record if asked, then answer the page."""
        if self.done:  # the page left while the whole server was asked
            stream.terminate("Stopped by publisher stop")
            return
        self.stream = stream
        if self.request.record:
            self.recorder = self.transports.recorder(
                self.request.name, self.request.media_session_id, info, self._recorder_state
            )
            stream.subscribe(self.recorder)
        self.send_answer(sdp)

    def _state(self, state: str, info: str | None) -> None:
        if self.done:
            return
        if state == "connected":
            self.disarm()
            if self.request.rtmp_url and self.pushes is not None:
                self._push(self.pushes)  # PUBLISHING once the push is listed
            else:
                self.report("PUBLISHING", **self._record_info())
        elif state == "stopped":  # the publisher closed its connection
            self.end("UNPUBLISHED", None)
        else:
            self.end("FAILED", info)

    def _push(self, pushes: Pushes) -> None:
        """Send the stream on to its ``rtmpUrl`` (as the SDK's republishing demo
        asks); it ends with the publication. The page hears PUBLISHING once the
        push is listed (REST ``push/find`` finds it from then on, on any worker;
        its RTMP connection comes up after). A push refused at once (a bad URL,
        too many pushes) fails the publication, which could not do what it asked."""

        def started(_: object) -> None:
            if not self.done:
                self.report("PUBLISHING", **self._record_info())

        def refused(failure: Failure) -> None:
            if isinstance(failure.value, WcsError):
                self.end("FAILED", failure.value.info)
            else:
                self.refused(failure)

        pushes.start(self.request.name, self.request.rtmp_url, self.session.id).addCallbacks(
            started, refused
        )

    def _recorder_state(self, state: str, info: str | None) -> None:
        if state == "failed":  # the disk filled up, for instance
            self.end("FAILED", info)

    def _sample(self, sample: Sample) -> None:
        stream = self.stream
        if stream is None:
            return
        stream.send(sample)
        if sample.kind == "video" and sample.keyframe:
            self.media.described(stream.info)  # its size, from the keyframe's SPS
        if stream.failure is not None:  # the fan-out broke: the stream has ended
            self.end("FAILED", stream.failure)

    def _record_info(self) -> dict[str, Any]:
        return {"recordName": self.recorder.name} if self.recorder else {}

    def release(self) -> Deferred[dict[str, Any] | None] | None:
        """The peer (after what it still holds), then the live stream (its viewers
        get STOPPED, its recorder completes the file); the page hears the end
        after the file. Each is forgotten here: each holds callbacks to this
        publication, and keeping them would make cycles."""
        publisher = self.publisher
        if publisher is not None:
            publisher.flush()
            publisher.close()
        self.publisher = None
        stream, self.stream = self.stream, None
        if stream is not None:
            stream.terminate("Stopped by publisher stop")
        recorder, self.recorder = self.recorder, None
        if recorder is None:
            return None
        record_info: dict[str, Any] | None = {"recordName": recorder.name}
        return recorder.completed.addCallback(lambda _: record_info)
