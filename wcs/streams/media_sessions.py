"""Every play and publication this worker serves, as REST ``/stream/*`` lists them.

A page's ``playStream`` or ``publishStream`` is a *media session* (the SDK's
``mediaSessionId``). The front door that made it adds it here and keeps its
status; an operator lists them and stops one (``/stream/terminate``), which
ends it the way the page's own stop would, with a status the page hears.
Other workers' media sessions come with their loads (at most a report old).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from twisted.internet.defer import Deferred

from wcs.errors import NotFound
from wcs.media.sample import MediaInfo

#: What stops a media session: ``(info)``, the reason its page is told.
Stop = Callable[[str], None]
#: The stream a media session plays or publishes now, if any.
Source = Callable[[], Any]


class Control(Protocol):
    """A play that can be sought and paused (its front door's play)."""

    def seek(self, position: float) -> Deferred[dict[str, Any]]: ...

    def pause(self) -> dict[str, Any]: ...

    def resume(self) -> dict[str, Any]: ...


#: The statuses of one that has ended (a push stays listed a while with one).
ENDED = frozenset({"STOPPED", "FAILED", "UNPUBLISHED"})


@dataclass
class MediaSession:
    """One play or publication of a page."""

    id: str  # the page's mediaSessionId
    name: str
    published: bool
    provider: str  # "WebRTC", "MSE", "WHEP", "WHIP" or "RTMP" (a push)
    session_id: str  # the WebSocket session it belongs to
    status: str = "NEW"
    info: str = ""
    record: bool = False
    has_audio: bool = False
    has_video: bool = False
    width: int = 0
    height: int = 0
    created: int = field(default_factory=lambda: int(time.time() * 1000))  # ms
    worker: str = ""
    rtmp_url: str = ""  # a push's destination (provider "RTMP")
    rendition: str = ""  # an adapting WebRTC viewer's step: "source", "360p", ...

    @property
    def ended(self) -> bool:
        """Over, though still listed for its status: it counts as no viewer."""
        return self.status in ENDED

    def described(self, info: MediaInfo | None) -> None:
        """What the stream carries is known: its size and tracks."""
        if info is None:
            return
        self.has_audio = info.audio is not None
        self.has_video = info.video is not None
        if info.video is not None:
            self.width, self.height = info.video.width, info.video.height

    def listed(self) -> dict[str, Any]:
        """As WCS's REST API gives a stream (the fields the SDK's console reads)."""
        audio = "opus" if self.provider in ("WebRTC", "WHEP") or self.published else "mpeg4-generic"
        return {
            "mediaSessionId": self.id,
            "name": self.name,
            "published": self.published,
            "status": self.status,
            "info": self.info,
            "mediaProvider": self.provider,
            "sessionId": self.session_id,
            "hasAudio": self.has_audio,
            "hasVideo": self.has_video,
            "record": self.record,
            "width": self.width,
            "height": self.height,
            "audioCodec": audio if self.has_audio else "",
            "videoCodec": "H264" if self.has_video else "",
            "createDate": self.created,
            "worker": self.worker,
            **({"rtmpUrl": self.rtmp_url} if self.rtmp_url else {}),
            **({"rendition": self.rendition} if self.rendition else {}),
        }

    def as_dict(self) -> dict[str, Any]:
        """Its fields, for the load a worker reports every second (cheaply)."""
        return dict(self.__dict__)


class MediaSessions:
    """This worker's media sessions, and how to stop each."""

    def __init__(self, worker: str = "0") -> None:
        self.worker = worker
        #: by (session, mediaSessionId): pages choose the ids, and two may clash
        self._sessions: dict[tuple[str, str], tuple[MediaSession, Stop, Source]] = {}
        self._controls: dict[tuple[str, str], Control] = {}

    def add(
        self, media: MediaSession, stop: Stop, source: Source, control: Control | None = None
    ) -> None:
        """``control``: how a play is sought and paused (a publication has none)."""
        media.worker = self.worker
        self._sessions[media.session_id, media.id] = (media, stop, source)
        if control is not None:
            self._controls[media.session_id, media.id] = control

    def remove(self, media: MediaSession) -> None:
        self._sessions.pop((media.session_id, media.id), None)
        self._controls.pop((media.session_id, media.id), None)

    def all(self) -> list[MediaSession]:
        return [media for media, _, _ in self._sessions.values()]

    def stop(self, media_id: str, info: str) -> int:
        """End every media session here called ``media_id``; how many there were."""
        found = [stop for (_, key), (_, stop, _) in self._sessions.items() if key == media_id]
        for stop in found:
            stop(info)
        return len(found)

    def stream(self, media_id: str) -> Any:
        """The stream a media session here called ``media_id`` has now, or None."""
        for (_, key), (_, _, source) in self._sessions.items():
            if key == media_id and (stream := source()) is not None:
                return stream
        return None

    def control(self, media_id: str) -> Control | None:
        """The play here called ``media_id``, to seek or pause, or None."""
        return next((c for (_, key), c in self._controls.items() if key == media_id), None)

    def __len__(self) -> int:
        return len(self._sessions)


def held_elsewhere(sessions: list[MediaSession], here: str, media_id: str) -> str:
    """The worker of this machine (not ``here``) that holds ``media_id``, one of
    ``sessions`` (as the whole server lists it); raises :class:`NotFound`
    saying where it is when no worker of this machine does."""
    machine = here.rpartition("/")[0]
    for media in sessions:
        if media.worker != here and media.worker.rpartition("/")[0] == machine:
            return media.worker
    where = (
        f" (it is on worker {sessions[0].worker}, of another node: ask that node)"
        if sessions
        else ""
    )
    raise NotFound(f"no play or publication {media_id} runs on this server{where}")
