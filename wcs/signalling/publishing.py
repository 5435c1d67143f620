"""One ``publishStream``: a browser's camera in, a live stream out, and a
recording when ``record`` is true.

PUBLISHING carries ``recordName``; UNPUBLISHED is sent once the file is
complete under its final name, so the page's download link works at once.
"""

from __future__ import annotations

from collections.abc import Callable

from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from wcs import aio
from wcs.config import Settings
from wcs.media.errors import MediaError
from wcs.media.recorder import Recorder, record_name
from wcs.media.sample import Sample
from wcs.signalling.messages import StreamRequest
from wcs.signalling.negotiation import Negotiation
from wcs.signalling.session import Session
from wcs.streams.registry import NameTaken, PublishedStream, StreamRegistry
from wcs.webrtc.publisher import WebRTCPublisher

log = Logger()

def check_name(name: str) -> None:
    if not name or "://" in name or not name.isprintable() or len(name) > 256:
        raise MediaError("Invalid stream name for publishing")


class Publication(Negotiation):
    """From the offer to UNPUBLISHED (or FAILED), releasing everything once."""

    def __init__(self, session: Session, request: StreamRequest, registry: StreamRegistry,
                 settings: Settings, clock: IReactorTime,
                 on_done: Callable[[Publication], None]) -> None:
        super().__init__(session, request, clock, on_done)
        self.registry = registry
        self.settings = settings
        self.publisher = WebRTCPublisher(f"publish {request.name!r}", self._sample, self._state)
        self.stream: PublishedStream | None = None
        self.recorder: Recorder | None = None
        self.record_name: str | None = None

    def start(self) -> None:
        try:
            check_name(self.request.name)
            if self.request.name in self.registry.published:
                raise NameTaken(self.request.name)
        except MediaError as error:
            self._fail(error.info)
            return
        except NameTaken:
            self._fail(f"Stream {self.request.name!r} is already being published")
            return
        self.arm_ice_timeout()
        answering = aio.deferred(self.publisher.answer(self.request.sdp))
        answering.addCallback(self._answered).addErrback(self.refused)

    def _fail(self, info: str) -> None:
        self.done = True
        self.session.report_stream(self.request, "FAILED", info)
        self._on_done(self)

    def _answered(self, sdp: str) -> None:
        if self.done:
            return
        assert self.publisher.info is not None
        try:
            self.stream = self.registry.publish(self.request.name, self.publisher.info,
                                                self.publisher.request_keyframe)
            if self.request.record:
                folder = self.settings.media_dir
                self.record_name = record_name(self.settings.record_template,
                                               self.request.name,
                                               self.request.media_session_id, folder)
                self.recorder = Recorder(folder, self.record_name, self.publisher.info,
                                         f"record {self.record_name}")
        except NameTaken:
            self.end("FAILED", f"Stream {self.request.name!r} is already being published")
            return
        except MediaError as error:
            self.end("FAILED", error.info)
            return
        self.send_answer(sdp)

    def _state(self, state: str, info: str | None) -> None:
        if self.done:
            return
        if state == "connected":
            self.disarm()
            self.session.report_stream(self.request, "PUBLISHING", **self._record_info())
        else:
            self.end("FAILED", info)

    def _sample(self, sample: Sample) -> None:
        if self.done:
            return
        if self.stream is not None:
            self.stream.send(sample)
        if self.recorder is not None:
            self.recorder.deliver(sample)
            if self.recorder.failed:  # the disk filled up, for instance
                self.end("FAILED", self.recorder.failed)

    def _record_info(self) -> dict[str, object]:
        return {"recordName": self.record_name} if self.record_name else {}

    def end(self, status: str | None, info: str | None) -> None:
        """Stop once: the peer, the live stream, then the file; report last."""
        if self.done:
            return
        self.done = True
        self.disarm()
        aio.deferred(self.publisher.close()).addErrback(
            lambda f: log.failure("closing a publisher failed", f))
        if self.stream is not None:
            self.stream.terminate("Stopped by publisher stop")
        finishing: Deferred = self.recorder.finish() if self.recorder else succeed(None)

        def recorded(_: object) -> None:
            if status is not None:
                self.session.report_stream(self.request, status, info, **self._record_info())

        def not_recorded(failure: Failure) -> None:
            reason = failure.value.info if isinstance(failure.value, MediaError) else "failed"
            log.warn("{name}: recording not kept: {reason}", name=self.request.name,
                     reason=reason)
            if status is not None:
                self.session.report_stream(self.request, "FAILED" if status != "FAILED" else status,
                       info if status == "FAILED" else reason)

        finishing.addCallbacks(recorded, not_recorded)
        finishing.addBoth(lambda _: self._on_done(self))
