"""What one client, and all of them together, may hold at once.

Every cap a public server needs, in one place, with the properties key that
sets it: the settings reader fills :class:`Limits` once at start, and each
front door, the registry and the recorder are handed the values they check.
Going over a cap raises :class:`~wcs.errors.LimitReached`, whose info names
the key, so a page sees FAILED and a REST caller 429 with the limit named.
"""

from __future__ import annotations

from dataclasses import dataclass, fields


@dataclass(frozen=True)
class Limits:
    """The caps, by their properties keys (see the table in the README)."""

    #: WebSocket sessions open at once, in all and from one client address.
    max_sessions: int = 2000
    max_sessions_per_address: int = 100
    #: plays and publications one session may have running at once.
    max_plays_per_session: int = 16
    max_publishes_per_session: int = 4
    #: ``vod-live://`` broadcasts running at once (REST-started ones included),
    #: and of those, the ones REST ``startup`` made.
    max_broadcasts: int = 200
    max_rest_startups: int = 100
    #: files being opened or checked, and snapshots being decoded, at once: running
    #: on the file threads or waiting for one; past this, the next is refused.
    max_pending_opens: int = 64
    #: files one playlist channel may list (a playlist file's or REST's, appends included).
    max_playlist_items: int = 1000
    #: signalling messages a session may send per second (bursts of twice that).
    ws_message_rate: int = 50
    #: seconds an HTTP connection may sit idle between requests.
    http_idle_timeout: int = 30
    #: MiB one recording may grow to before it is completed and the publication
    #: ends; MiB of the disk that recordings always leave free.
    record_max_size: int = 4096
    record_min_free_disk: int = 512
    #: streams being sent on to RTMP servers at once (REST ``push`` and ``rtmpUrl``).
    max_pushes: int = 100


#: Properties keys of the caps (each the attribute's own name).
KEYS: tuple[str, ...] = tuple(field.name for field in fields(Limits))
