"""Soak: a long mixed load at the server's limits, sampled for leaks and errors.

For ``--minutes`` (default 30) it keeps a steady, churning crowd on one server:
- counting WebRTC viewers (``testkit/cheap_viewers.py``'s trick: real ICE and DTLS,
  then only the encrypted packets are counted) of ``vod://`` (personal, some to
  the end of a short file), ``vod-live://`` (and an alias of it), REST startups,
  published streams and recordings;
- MSE viewers (the SDK's media socket, every record's framing checked);
- WebRTC publishers (``testkit/rtc_publisher.py``), with and without ``record``,
  some of which just close their socket;
- REST ``startup``/``find``/``find_all``/``terminate`` calls, good and bad, each
  status checked against what it should be and against ``docs/openapi.json``;
- abrupt disconnects without any goodbye: a socket closed (FIN or RST) before the
  WebSocket handshake, before ``connection``, right after ``playStream``, after the
  answer (mid-ICE), mid-play; an MSE media socket dropped mid-play; a WebRTC
  viewer whose media vanishes while its signalling stays (the server must end it);
- bad input (missing and escaping names, unknown streams, a non-finite width, a
  bad stream name, a bad SDP, a non-JSON frame) that must get its FAILED/``fail``;
- a few times per run, a burst above each limit (sessions from one address,
  plays and publishes on one session, broadcasts, REST startups, a message
  flood): above a cap configured with ``--max-...`` the server should refuse with
  a FAILED/4xx, counted as "refused (expected)"; the others must keep working.

All clients are cheap (the box has 2 cores: measure the server, not the load).
Every ``--sample-seconds`` (default 60) a row gives the server's RSS, open fds,
threads and CPU, the bench's own CPU, sessions and viewers (as the bench and as
``find_all`` see them), and the counts so far. After the load the bench waits
for the server to go idle and takes a last row, then says:

- **flat**: RSS grew less than ``--rss-growth`` % (default 10) over the second
  half of the load (least-squares slope over its rows × its length, against the
  RSS at its start), and fds and threads once idle are back within ``--fd-margin``
  and ``--thread-margin`` (default 10 each) of the baseline taken idle after a
  warm-up of every kind of client (so pools that grow once do not count); if
  they are above the baseline at all, a last look ``--linger`` s later (default
  60) decides, and the descriptors left over are listed by kind (TCP state,
  UDP, pipe, file...);
- **zero internal errors**: no line of the server's log has "Traceback",
  "Unhandled", "internal error" or "Task exception was never retrieved"
  (the first few are printed with their tracebacks).

The load's clients come from ``--client-addresses`` loopback addresses
(127.0.1.x), as many clients would, so a per-address cap is not what it meets.

Caps: ``--server-config key=value`` (repeatable) goes into the server's properties
(an unknown key is only warned about by the server). ``--max-sessions N`` and the
other cap options (named after the server's keys: ``max_sessions``,
``max_sessions_per_address``, ``max_plays_per_session``,
``max_publishes_per_session``, ``max_broadcasts``, ``max_rest_startups``,
``ws_message_rate``) tell the bench where a cap is, so that its bursts go above
it; ``--server-config max_sessions=200`` sets both. Without a cap a burst has a
fixed size (60 sessions from one address, 8 plays and 4 publishes on one
session, 4 broadcasts, 6 startups, 300 messages at once). A refusal that names
a limit (a FAILED info, a 4xx/503 body or handshake, a close reason) is counted
as "refused (expected)"; a cap that lets more in, a refusal that does not say
why, and a client at another address turned away are not.

``--census`` runs the server under ``testkit/census.py`` (``--trim``): at the
baseline and once idle after the load it collects, counts the objects it tracks
by type and trims malloc's free heap, then prints the types whose counts grew
most and the RSS before and after the trim (growth that a trim gives back is
the allocator's, not live objects'). ``--tracemalloc N`` also traces Python's
allocations (N frames) and prints the source lines that grew most (slow).

Run with ``scripts/bench.sh bench/soak.py [--minutes 30] [--sample-seconds 60]``;
try it short with ``--minutes 3 --sample-seconds 20``; ``--smoke`` runs it once at its
smallest (6 s of load, two viewers, no limit bursts), for the suite.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import json
import os
import random
import re
import shutil
import signal
import socket
import struct
import sys
import tempfile
import time
import uuid
from collections import Counter as Tally
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription

from testkit.cheap_viewers import CheapViewer, Counter, _ice_protocols
from testkit.harness import (
    ServerProcess,
    encode_frame,
    handshake,
    require_loopback_only,
    split_url,
)
from testkit.mse_client import MSE_OFFER, parse_records
from testkit.procfs import proc_times
from testkit.rest_client import call, conforms
from testkit.rtc_client import AsyncWebSocket, stream_request
from testkit.rtc_publisher import publish
from tools.makemedia import make_mp4
from wcs.webrtc.viewer import EncodedTrack

#: What a server's log line must not say.
INTERNAL = re.compile(
    r"Traceback|Unhandled|internal error|Task exception was never retrieved", re.IGNORECASE
)
#: What a refusal for a limit is expected to say (in a FAILED info, a 4xx body, a close).
LIMIT_WORDS = re.compile(
    r"limit|too many|maximum|exceed|quota|\brate\b|capacity|busy|"
    r"overload",
    re.IGNORECASE,
)
#: HTTP statuses that mean "over a limit" on the REST side and at the WebSocket handshake.
LIMIT_STATUSES = {403, 429, 503}
#: The caps the bursts push above, by the server's properties keys; each is read
#: from ``--server-config KEY=N`` when its own ``--KEY`` option is not given.
CAPS = (
    "max_sessions",
    "max_sessions_per_address",
    "max_plays_per_session",
    "max_publishes_per_session",
    "max_broadcasts",
    "max_rest_startups",
    "ws_message_rate",
)
#: Loopback addresses (any of 127/8 is this machine): the steady load's clients
#: come from 127.0.1.x (``--client-addresses`` of them), a per-address burst from
#: BURST_ADDRESS, the client that must still get in meanwhile from OTHER_ADDRESS,
#: and a server-wide burst from 127.0.2.x.
BURST_ADDRESS, OTHER_ADDRESS = "127.0.0.2", "127.0.0.3"
#: How long the server has to end a WebRTC play whose peer stopped answering (s):
#: ICE consent fails after about 30 s.
VANISH_WAIT = 60.0
#: How long a stopStream may take to be answered (s).
STOP_WAIT = 10.0
#: How long a play may take to start (s): the ICE deadline is 20 s.
START_WAIT = 30.0


class Refused(ConnectionError):
    """The server turned a session away: at the handshake, by closing, or with ``fail``."""


class Closed(ConnectionError):
    """The server closed the socket (with a close frame, or just the connection)."""


class Ws(AsyncWebSocket):
    """The test kit's WebSocket, plus a source address, close reasons, abrupt
    closes (FIN or RST, never a close frame) and a count of those open."""

    live = 0

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        super().__init__(reader, writer)
        self.open = True
        self._reader: asyncio.Task | None = None
        Ws.live += 1

    @classmethod
    async def dial(cls, url: str, source: str | None = None, timeout: float = 10.0) -> Ws:
        host, port, path = split_url(url)
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(host, int(port), local_addr=(source, 0) if source else None),
            timeout,
        )
        writer.write(handshake(host, port, path))
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout)
        except (TimeoutError, asyncio.IncompleteReadError, ConnectionError) as error:
            writer.transport.abort()
            raise Refused(f"handshake: {type(error).__name__}") from None
        status = head.split(b"\r\n", 1)[0].decode(errors="replace")
        if " 101 " not in status:
            writer.transport.abort()
            raise Refused(f"handshake: {status}")
        return cls(reader, writer)

    async def _read_loop(self) -> None:
        """Every message into the queue (pings answered); then why it ended.
        One reader for the socket's life: a timeout never cuts a frame in two."""
        try:
            while True:
                opcode, payload = await self.receive()
                if opcode == 8:
                    self._queue.put_nowait(
                        Closed(payload[2:].decode(errors="replace") or "closed by server")
                    )
                    return
                if opcode == 1:
                    message = json.loads(payload)
                    if message.get("message") == "ping":
                        await self.send("pong", None)
                        continue
                    self._queue.put_nowait(message)
        except (asyncio.IncompleteReadError, ConnectionError, OSError) as error:
            self._queue.put_nowait(Closed(f"connection lost ({type(error).__name__})"))
        except ValueError as error:
            self._queue.put_nowait(Closed(f"bad frame from the server: {error}"))

    async def receive_json(self) -> dict[str, Any]:
        if self._reader is None:
            self._queue: asyncio.Queue[dict[str, Any] | Closed] = asyncio.Queue()
            self._reader = asyncio.ensure_future(self._read_loop())
        item = await self._queue.get()
        if isinstance(item, Closed):
            self._queue.put_nowait(item)  # and again for any later call
            raise item
        return item

    async def next(self, until: float) -> dict[str, Any] | None:
        """The next message, or None once ``until`` (monotonic) has passed."""
        try:
            return await asyncio.wait_for(self.receive_json(), max(0.01, until - time.monotonic()))
        except TimeoutError:
            return None

    def drop(self, reset: bool = False) -> None:
        """Go away without a word: FIN, or RST with ``reset``."""
        if not self.open:
            return
        self.open = False
        Ws.live -= 1
        if self._reader is not None:
            self._reader.cancel()
        sock = self.writer.get_extra_info("socket")
        if reset and sock is not None:
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            except OSError:
                pass
            self.writer.transport.abort()
        else:
            self.writer.close()

    def close(self) -> None:
        self.drop()


@dataclass
class Sample:
    label: str
    rss: int
    fds: int
    threads: int
    cpu: float = 0.0  # server, share of one core over the period
    client: float = 0.0  # this bench
    t: float = 0.0  # minutes into the load
    sessions: int = 0
    viewers: int = 0
    server_viewers: str = "?"
    streams: str = "?"
    counts: Tally = field(default_factory=Tally)
    errors: int = 0


def server_sample(pid: int, label: str) -> Sample:
    status = Path(f"/proc/{pid}/status").read_text()
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    return Sample(
        label,
        int(fields["VmRSS"].split()[0]) * 1024,
        len(os.listdir(f"/proc/{pid}/fd")),
        int(fields["Threads"]),
    )


TCP_STATES = {
    "01": "ESTABLISHED",
    "02": "SYN_SENT",
    "03": "SYN_RECV",
    "04": "FIN_WAIT1",
    "05": "FIN_WAIT2",
    "06": "TIME_WAIT",
    "07": "CLOSE",
    "08": "CLOSE_WAIT",
    "09": "LAST_ACK",
    "0A": "LISTEN",
    "0B": "CLOSING",
}


def fd_census(pid: int) -> Tally:
    """The server's open descriptors by kind: TCP sockets by state (and whether
    a listener's), UDP sockets, pipes, eventfds, files by folder."""
    sockets: dict[str, str] = {}
    for proto in ("tcp", "tcp6", "udp", "udp6", "unix"):
        try:
            lines = Path(f"/proc/{pid}/net/{proto}").read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            cols = line.split()
            if proto == "unix":
                sockets[cols[6]] = "unix socket"
            elif proto.startswith("tcp"):
                sockets[cols[9]] = f"tcp {TCP_STATES.get(cols[3], cols[3])}"
            else:
                sockets[cols[9]] = "udp socket"
    kinds: Tally = Tally()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            kinds[sockets.get(target[8:-1], "socket (other)")] += 1
        elif target.startswith(("pipe:", "anon_inode:")):
            kinds[target.split("[")[0].rstrip(":")] += 1
        else:
            kinds[f"file in {os.path.dirname(target)}"] += 1
    return kinds


def cpu_seconds(pid: int | str) -> float:
    user, system, _ = proc_times(pid)
    return user + system


class LogScan:
    """The server's log read as it grows, for lines that mean an internal error.
    The first few are kept with their context: the log line a traceback hangs
    from, and the traceback's own (indented) lines."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0
        self.count = 0
        self.excerpts: list[list[str]] = []
        self._open: list[str] | None = None  # the excerpt still taking indented lines
        self._previous = ""
        self._partial = ""

    def scan(self) -> int:
        with self.path.open("rb") as log:
            log.seek(self.offset)
            chunk = log.read()
        self.offset += len(chunk)
        lines = (self._partial + chunk.decode(errors="replace")).split("\n")
        self._partial = lines.pop()
        for line in lines:
            indented = line.startswith(("\t", " "))
            if self._open is not None and indented and len(self._open) < 40:
                self._open.append(line)
            else:
                self._open = None
            if INTERNAL.search(line):
                self.count += 1
                if len(self.excerpts) < 6 and self._open is None:
                    self._open = ([self._previous] if indented else []) + [line]
                    self.excerpts.append(self._open)
            if not indented:
                self._previous = line
        return self.count


@dataclass
class Caps:
    values: dict[str, int]

    def __getattr__(self, name: str) -> int:
        return self.values.get(name, 0)

    def any(self) -> bool:
        return any(self.values.values())


class Soak:
    def __init__(
        self, args: argparse.Namespace, server: ServerProcess, media: Path, caps: Caps
    ) -> None:
        self.args = args
        self.server = server
        self.ws_url, self.http_url = server.ws_url, server.http_url
        self.pid = server.process.pid
        self.media = media
        self.caps = caps
        self.rng = random.Random(args.seed)
        self.count: Tally = Tally()
        self.reasons: Tally = Tally()  # unexpected outcomes, by what happened
        self.refusals: Tally = Tally()  # refusals seen, by what they said
        self.notes: Tally = Tally()  # client-side loop exceptions and the like
        self.counter = Counter()
        self.viewers = 0  # plays now PLAYING, as the bench sees them
        self.publishers = 0
        self.publishing: dict[str, tuple[float, float]] = {}  # name → (start, end) times
        self.rest_streams: dict[str, float] = {}  # name → when to terminate it
        self.records: list[str] = []
        self.tasks: set[asyncio.Task] = set()
        self.serial = 0
        self.pool = concurrent.futures.ThreadPoolExecutor(3, thread_name_prefix="rest")
        self.log = LogScan(server.log_path)
        self.load_end = 0.0
        self.cap_files = sum(1 for _ in media.glob("cap*.mp4"))

    # --- small things

    def next_id(self) -> int:
        self.serial += 1
        return self.serial

    def spawn(self, coroutine: Any, limit: float) -> asyncio.Task:
        """Run a client, bounded by ``limit`` seconds; its failure is counted, never raised."""

        async def bounded() -> None:
            try:
                await asyncio.wait_for(coroutine, limit)
            except TimeoutError:
                self.failed("client", "did not finish in time (bench bound)")
            except asyncio.CancelledError:
                raise
            except Refused as refused:  # a second socket of a client, say
                if not self.refusal(str(refused)):
                    self.failed("client", f"refused: {refused}")
            except Exception as error:  # counted, the soak goes on
                self.failed("client", f"{type(error).__name__}: {str(error)[:80]}")

        task = asyncio.ensure_future(bounded())
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return task

    def failed(self, kind: str, reason: str) -> None:
        key = kind.split(" ")[0]
        if key in ("webrtc", "mse"):
            self.count["play.failed"] += 1
        elif key == "publish":
            self.count["pub.failed"] += 1
        else:
            self.count[f"{key}.failed"] += 1
        self.reasons[f"{kind}: {reason}"] += 1
        if "internal error" in reason.lower():
            self.count["client.internal"] += 1

    def refusal(self, info: str) -> bool:
        """Whether ``info`` reads as a refusal for a limit; counted if it does."""
        if (
            LIMIT_WORDS.search(info or "")
            or info.startswith("handshake: HTTP/1.1 4")
            or info.startswith("handshake: HTTP/1.1 503")
        ):
            self.count["refused"] += 1
            self.refusals[info[:90]] += 1
            return True
        return False

    def remaining(self) -> float:
        return self.load_end - time.monotonic()

    def client_address(self) -> str:
        """The steady load's clients come from a few addresses, as many clients would."""
        return f"127.0.1.{self.rng.randrange(self.args.client_addresses) + 1}"

    async def establish(self, source: str | None = None) -> tuple[Ws, dict[str, Any]]:
        """A session up to ``getUserData``; Refused if the server turns it away."""
        ws = await Ws.dial(self.ws_url, source or self.client_address())
        try:
            await ws.send("connection", {"appKey": "defaultApp", "clientVersion": "2.0"})
            message = await ws.next(time.monotonic() + 10)
        except Closed as closed:
            ws.drop()
            raise Refused(f"closed at connection: {closed}") from None
        if message is None or message["message"] != "getUserData":
            ws.drop()
            info = "no answer" if message is None else json.dumps(message)[:120]
            raise Refused(f"connection: {info}")
        return ws, message["data"][0]

    async def session_or_refusal(self, kind: str) -> tuple[Ws, dict[str, Any]] | None:
        try:
            return await self.establish()
        except Refused as refused:
            if not self.refusal(str(refused)):
                self.failed(kind, f"session refused: {refused}")
            return None
        except OSError as error:
            self.failed(kind, f"connect: {type(error).__name__}")
            return None

    # --- WebRTC viewers

    async def rtc_view(self, kind: str, name: str, seconds: float, mode: str) -> None:
        """One counting WebRTC viewer. ``mode``: stop (stopStream), end (the file's
        end stops it), drop-offer (gone right after playStream), drop-answer (gone
        after the answer, mid-ICE), drop (gone mid-play, FIN or RST), vanish (media
        stops answering, signalling stays: the server must end the play)."""
        self.count["play.started"] += 1
        session = await self.session_or_refusal(kind)
        if session is None:
            return
        ws, _ = session
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        view = CheapViewer()

        @pc.on("connectionstatechange")
        def changed() -> None:
            if pc.connectionState == "connected" and view.connected_at is None:
                view.connected_at = time.monotonic()
                self.counter.add(pc, view)

        playing = False
        try:
            pc.addTransceiver("audio", direction="recvonly")
            pc.addTransceiver("video", direction="recvonly")
            await pc.setLocalDescription(await pc.createOffer())
            request = stream_request(name, sdp=pc.localDescription.sdp)
            await ws.send("playStream", request)
            if mode == "drop-offer":
                await asyncio.sleep(self.rng.random() * 0.2)
                ws.drop(reset=self.rng.random() < 0.5)
                self.count["abrupt"] += 1
                self.count["play.ok"] += 1
                return
            deadline = time.monotonic() + START_WAIT
            end_at: float | None = None
            stopping_at: float | None = None
            final = ""
            info = ""
            while True:
                now = time.monotonic()
                if end_at is not None and now >= end_at and stopping_at is None:
                    if mode == "drop":
                        reset = self.rng.random() < 0.5
                        if reset:  # no DTLS close_notify either: the UDP sockets just go
                            self.counter.remove(view)
                            for protocol in _ice_protocols(pc):
                                protocol.transport.close()
                        ws.drop(reset=reset)
                        self.count["abrupt"] += 1
                        final = "dropped"
                        break
                    if mode == "vanish":
                        self.counter.remove(view)  # STUN consent goes unanswered from now
                        self.count["abrupt"] += 1
                        deadline = now + VANISH_WAIT
                        stopping_at = now
                    else:
                        await ws.send("stopStream", dict(request, sdp=None))
                        stopping_at = now
                        deadline = now + STOP_WAIT
                until = deadline if end_at is None or stopping_at is not None else end_at
                message = await ws.next(min(until, deadline))
                if message is None:
                    if time.monotonic() >= deadline:
                        break
                    continue
                if message["message"] == "setRemoteSDP":
                    await pc.setRemoteDescription(
                        RTCSessionDescription(message["data"][1], "answer")
                    )
                    if mode == "drop-answer":
                        await asyncio.sleep(self.rng.random() * 0.5)
                        ws.drop(reset=self.rng.random() < 0.5)
                        self.count["abrupt"] += 1
                        final = "dropped"
                        break
                elif message["message"] == "notifyStreamStatusEvent":
                    event = message["data"][0]
                    if event.get("mediaSessionId") != request["mediaSessionId"]:
                        continue
                    status = event["status"]
                    if status == "PLAYING" and not playing:
                        playing = True
                        self.viewers += 1
                        self.count["play.playing"] += 1
                        end_at = time.monotonic() + (seconds if mode != "end" else 1e9)
                        deadline = end_at + (STOP_WAIT if mode != "end" else 0)
                        if mode == "end":
                            deadline = time.monotonic() + seconds + 30
                    elif status in ("STOPPED", "FAILED"):
                        final, info = status, event.get("info") or ""
                        break
                elif message["message"] == "fail":
                    info = message["data"][0].get("info", "") if message["data"] else ""
            self.judge_rtc(kind, mode, name, playing, final, info, view, stopping_at)
        except Closed as closed:
            if playing and kind == "webrtc published":
                self.count["play.ok"] += 1  # the publisher went; the session may follow
            elif not self.refusal(str(closed)):
                self.failed(kind, f"socket closed by server: {closed}")
        finally:
            if playing:
                self.viewers -= 1
            self.counter.remove(view)
            try:
                await asyncio.wait_for(pc.close(), 10)
            except Exception as error:
                self.notes[f"client pc.close: {type(error).__name__}"] += 1
            ws.drop()

    def judge_rtc(
        self,
        kind: str,
        mode: str,
        name: str,
        playing: bool,
        final: str,
        info: str,
        view: CheapViewer,
        stopping_at: float | None,
    ) -> None:
        if final == "FAILED" and self.refusal(info):
            return
        if (
            kind == "webrtc rest"
            and name not in self.rest_streams
            and (final == "FAILED" or (final == "STOPPED" and view.rtp == 0))
        ):
            self.count["play.raced"] += 1  # REST terminated it as it came
            self.notes[f"REST stream terminated while a viewer joined: {final} {info}"] += 1
            return
        if mode == "drop-answer" and final == "dropped":
            self.count["play.ok"] += 1
            return
        if not playing:
            if kind == "webrtc published" and name not in self.publishing:
                self.count["play.raced"] += 1  # its publisher stopped meanwhile
                return
            self.failed(
                kind, f"never PLAYING ({final or 'no status'}{': ' + info if info else ''})"
            )
            return
        if mode == "vanish":
            if final in ("FAILED", "STOPPED"):
                self.count["play.ok"] += 1
                self.count["vanish.ended"] += 1
            else:
                self.failed(kind, f"media vanished, server still PLAYING after {VANISH_WAIT:.0f} s")
                self.count["vanish.hung"] += 1
            return
        if mode == "drop" and final == "dropped":
            self.count["play.ok"] += 1
            return
        if view.rtp == 0:
            self.failed(kind, f"PLAYING but no RTP ({final} {info})")
            return
        if kind == "webrtc published" and final in ("STOPPED", "FAILED"):
            self.count["play.ok"] += 1  # its publisher may have gone first
            return
        if final == "STOPPED":
            self.count["play.ok"] += 1
        elif final == "":
            what = "no STOPPED after stopStream" if stopping_at else "no end"
            self.failed(kind, what)
        else:
            self.failed(kind, f"{final} while playing: {info}")

    # --- MSE viewers

    async def mse_view(self, kind: str, name: str, seconds: float, mode: str) -> None:
        """One MSE viewer. ``mode``: stop, drop (both sockets go), drop-media (the
        media socket goes mid-play, signalling stays), no-media (the media socket
        never comes: the server must give up)."""
        self.count["play.started"] += 1
        session = await self.session_or_refusal(kind)
        if session is None:
            return
        ws, user = session
        source = ws.writer.get_extra_info("sockname")[0]  # the media socket comes from there too
        media: Ws | None = None
        box = {"bytes": 0, "framing": 0}
        reader: asyncio.Task | None = None
        playing = False
        try:
            request = {
                "mediaSessionId": str(uuid.uuid1()),
                "name": name,
                "published": False,
                "hasVideo": True,
                "hasAudio": True,
                "mediaProvider": "MSE",
                "sdp": MSE_OFFER,
            }
            await ws.send("playStream", request)
            deadline = time.monotonic() + START_WAIT
            end_at: float | None = None
            acted = False
            final, info = "", ""
            while True:
                now = time.monotonic()
                if end_at is not None and now >= end_at and not acted:
                    acted = True
                    if mode == "drop" and media is not None:
                        media.drop(reset=self.rng.random() < 0.5)
                        ws.drop(reset=self.rng.random() < 0.5)
                        self.count["abrupt"] += 2
                        final = "dropped"
                        break
                    if mode == "drop-media" and media is not None:
                        media.drop(reset=self.rng.random() < 0.5)
                        self.count["abrupt"] += 1
                        deadline = now + 15
                    else:
                        await ws.send("stopStream", request)
                        deadline = now + STOP_WAIT
                until = deadline if end_at is None or acted else end_at
                message = await ws.next(min(until, deadline))
                if message is None:
                    if time.monotonic() >= deadline:
                        break
                    continue
                if message["message"] == "setRemoteSDP" and mode != "no-media":
                    media = await Ws.dial(self.ws_url, source)
                    await media.send("connectMediaTransport", {"authToken": user["authToken"]})
                    reader = asyncio.ensure_future(self._read_media(media, box))
                elif message["message"] == "notifyStreamStatusEvent":
                    event = message["data"][0]
                    if event.get("mediaSessionId") != request["mediaSessionId"]:
                        continue
                    status = event["status"]
                    if status == "PLAYING" and not playing:
                        playing = True
                        self.viewers += 1
                        self.count["play.playing"] += 1
                        end_at = time.monotonic() + seconds
                        deadline = end_at + STOP_WAIT
                    elif status in ("STOPPED", "FAILED"):
                        final, info = status, event.get("info") or ""
                        break
            if box["framing"]:
                self.failed(kind, "bad MSE record framing")
            elif final == "FAILED" and self.refusal(info):
                pass
            elif mode == "no-media":
                if final == "FAILED":
                    self.count["play.ok"] += 1
                    self.count["abrupt"] += 1
                else:
                    self.failed(kind, f"no media socket, yet {final or 'no end'} {info}")
            elif (
                kind == "mse rest"
                and name not in self.rest_streams
                and (final == "FAILED" or (final == "STOPPED" and box["bytes"] == 0))
            ):
                self.count["play.raced"] += 1
                self.notes[f"REST stream terminated while a viewer joined: {final} {info}"] += 1
            elif not playing:
                if kind == "mse published" and name not in self.publishing:
                    self.count["play.raced"] += 1
                else:
                    self.failed(kind, f"never PLAYING ({final or 'no status'}: {info})")
            elif final == "dropped":
                self.count["play.ok"] += 1
            elif box["bytes"] == 0:
                self.failed(kind, f"PLAYING but no media bytes ({final} {info})")
            elif mode == "drop-media":
                if final in ("STOPPED", "FAILED"):
                    self.count["play.ok"] += 1
                else:
                    self.failed(kind, "media socket gone, play not ended within 15 s")
            elif final == "STOPPED" or (kind == "mse published" and final == "FAILED"):
                self.count["play.ok"] += 1
            else:
                self.failed(kind, f"{final or 'no STOPPED after stopStream'} {info}".strip())
        except Closed as closed:
            if not self.refusal(str(closed)):
                self.failed(kind, f"socket closed by server: {closed}")
        finally:
            if playing:
                self.viewers -= 1
            if reader is not None:
                reader.cancel()
            if media is not None:
                media.drop()
            ws.drop()

    async def _read_media(self, media: Ws, box: dict[str, int]) -> None:
        try:
            while True:
                opcode, payload = await media.receive()
                if opcode == 8:
                    return
                if opcode == 1:
                    if json.loads(payload).get("message") == "ping":
                        await media.send("pong", None)
                    continue
                box["bytes"] += len(payload)
                try:
                    parse_records(payload)
                except (AssertionError, struct.error):
                    box["framing"] += 1
        except (ConnectionError, asyncio.IncompleteReadError, OSError):
            return

    # --- publishers

    async def publisher(self, seconds: float, record: bool, drop: bool) -> None:
        name = f"soak-pub-{self.next_id()}"
        self.count["pub.started"] += 1
        self.publishers += 1
        self.publishing[name] = (time.monotonic(), time.monotonic() + seconds)
        try:
            result = await publish(
                self.ws_url,
                name,
                self.media / "clip.mp4",
                seconds,
                record=record,
                timeout=seconds + 25,
                drop_socket=drop,
            )
        except (ConnectionError, OSError) as error:
            if not self.refusal(str(error)):
                self.failed("publish", f"{type(error).__name__}: {str(error)[:80]}")
            return
        finally:
            self.publishers -= 1
            self.publishing.pop(name, None)
        if drop:
            self.count["abrupt"] += 1
        infos = [e.get("info") or "" for e in result.events if e["status"] == "FAILED"]
        if infos and self.refusal(infos[0]):
            return
        if "PUBLISHING" not in result.statuses:
            self.failed("publish", f"never PUBLISHING: {result.statuses} {infos}")
        elif drop or result.statuses[-1] == "UNPUBLISHED":
            self.count["pub.ok"] += 1
            names = [e.get("recordName") for e in result.events if e.get("recordName")]
            if record and not drop and names:  # complete once UNPUBLISHED came
                self.records.append(names[-1])
        else:
            self.failed("publish", f"ended {result.statuses[-1]}: {infos}")

    async def publish_dropped_mid_negotiation(self) -> None:
        """publishStream, then gone as soon as the answer comes (or before)."""
        self.count["pub.started"] += 1
        session = await self.session_or_refusal("publish")
        if session is None:
            return
        ws, _ = session
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        try:
            for kind in ("video", "audio"):
                pc.addTrack(EncodedTrack(kind))
            await pc.setLocalDescription(await pc.createOffer())
            request = stream_request(
                f"soak-gone-{self.next_id()}",
                published=True,
                record=self.rng.random() < 0.5,
                sdp=pc.localDescription.sdp,
            )
            await ws.send("publishStream", request)
            if self.rng.random() < 0.5:
                message = await ws.next(time.monotonic() + 10)
                if message is None or message["message"] != "setRemoteSDP":
                    info = json.dumps(message)[:100] if message else "no answer"
                    if not self.refusal(info):
                        self.failed("publish", f"no answer before the drop: {info}")
                    return
                await pc.setRemoteDescription(RTCSessionDescription(message["data"][1], "answer"))
                await asyncio.sleep(self.rng.random() * 0.5)
            ws.drop(reset=self.rng.random() < 0.5)
            self.count["abrupt"] += 1
            self.count["pub.ok"] += 1
        finally:
            ws.drop()
            try:
                await asyncio.wait_for(pc.close(), 10)
            except Exception as error:
                self.notes[f"client pc.close: {type(error).__name__}"] += 1

    # --- sessions that go without a word

    async def abrupt_session(self) -> None:
        host, port, path = split_url(self.ws_url)
        how = self.rng.choice(
            ["tcp", "handshake", "half-handshake", "connection", "half-frame", "established"]
        )
        reader, writer = await asyncio.open_connection(host, int(port))
        try:
            if how == "tcp":
                pass
            elif how == "half-handshake":
                writer.write(handshake(host, port, path)[:40])
                await writer.drain()
            else:
                writer.write(handshake(host, port, path))
                await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
                frame = encode_frame(
                    json.dumps(
                        {"message": "connection", "data": [{"appKey": "defaultApp"}]}
                    ).encode()
                )
                if how == "connection":
                    writer.write(frame)
                elif how == "half-frame":
                    writer.write(frame[: len(frame) // 2])
                elif how == "established":
                    writer.write(frame)
                    await asyncio.wait_for(reader.read(4096), 10)
                await writer.drain()
            await asyncio.sleep(self.rng.random() * 0.3)
        except (TimeoutError, asyncio.IncompleteReadError, ConnectionError) as error:
            if not self.refusal(f"abrupt {how}: {error}"):
                self.failed("abrupt", f"{how}: {type(error).__name__}")
        finally:
            sock = writer.get_extra_info("socket")
            if self.rng.random() < 0.5 and sock is not None:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            writer.transport.abort()
            self.count["abrupt"] += 1

    # --- bad input

    async def bad_inputs(self) -> None:
        """One session that sends a few bad requests, each of which must get its FAILED."""
        session = await self.session_or_refusal("bad")
        if session is None:
            return
        ws, _ = session
        n = self.next_id()
        mse = {
            "published": False,
            "hasVideo": True,
            "hasAudio": True,
            "mediaProvider": "MSE",
            "sdp": MSE_OFFER,
        }
        catalogue = [
            ("missing file", "playStream", dict(mse, name=f"vod://missing-{n}.mp4")),
            ("escaping name", "playStream", dict(mse, name="vod://../../etc/passwd")),
            ("unknown stream", "playStream", dict(mse, name=f"no-such-stream-{n}")),
            ("hidden file", "playStream", dict(mse, name="vod-live://.hidden.mp4")),
            ("not mp4", "playStream", dict(mse, name="vod://notes.txt")),
            (
                "infinite width",
                "playStream",
                dict(
                    mse, name="vod://clip.mp4", constraints={"video": {"width": 1e999}}, width=1e999
                ),
            ),
            (
                "bad SDP",
                "playStream",
                dict(
                    mse, name="vod-live://clip.mp4", mediaProvider="WebRTC", sdp="v=0\r\nbogus\r\n"
                ),
            ),
            (
                "bad publish name",
                "publishStream",
                dict(
                    mse,
                    name="bad\x00name/..",
                    published=True,
                    mediaProvider="WebRTC",
                    sdp="v=0\r\n",
                ),
            ),
            (
                "unknown provider",
                "playStream",
                dict(mse, name="vod://clip.mp4", mediaProvider="Flash"),
            ),
        ]
        try:
            for label, message, body in self.rng.sample(catalogue, 3):
                self.count["bad.sent"] += 1
                body = dict(body, mediaSessionId=str(uuid.uuid1()))
                await ws.send(message, body)
                deadline = time.monotonic() + 10
                outcome = None
                while outcome is None:
                    answer = await ws.next(deadline)
                    if answer is None:
                        outcome = "no answer in 10 s"
                    elif answer["message"] == "notifyStreamStatusEvent":
                        event = answer["data"][0]
                        if (
                            event.get("mediaSessionId") == body["mediaSessionId"]
                            and event["status"] != "PENDING"
                        ):
                            outcome = event["status"]
                            if (
                                outcome == "FAILED"
                                and "internal" in (event.get("info") or "").lower()
                            ):
                                outcome = f"FAILED {event.get('info')}"
                    elif answer["message"] == "fail":
                        info = (answer["data"][0] or {}).get("info", "")
                        outcome = "FAILED" if "internal" not in info.lower() else f"fail {info}"
                if outcome == "FAILED":
                    self.count["bad.ok"] += 1
                else:
                    self.count["bad.unexpected"] += 1
                    self.reasons[f"bad input ({label}): {outcome}"] += 1
            self.count["bad.sent"] += 1
            ws.writer.write(encode_frame(b"{this is not json"))  # a frame that is not JSON
            deadline = time.monotonic() + 10
            answer = await ws.next(deadline)
            while answer is not None and answer["message"] != "fail":
                answer = await ws.next(deadline)  # what earlier requests still had to say
            if answer is not None:
                self.count["bad.ok"] += 1
            else:
                self.count["bad.unexpected"] += 1
                self.reasons[f"bad input (not JSON): {json.dumps(answer)[:80]}"] += 1
        except Closed as closed:
            if not self.refusal(str(closed)):
                self.failed("bad", f"socket closed by server: {closed}")
        finally:
            if self.rng.random() < 0.5:
                ws.drop(reset=True)
                self.count["abrupt"] += 1
            else:
                ws.drop()

    # --- REST

    async def rest(
        self,
        label: str,
        path: str,
        body: Any = None,
        method: str | None = None,
        raw: bytes | None = None,
        expect: tuple[int, ...] = (200,),
    ) -> tuple[int, Any]:
        loop = asyncio.get_running_loop()
        try:
            status, answer, _ = await loop.run_in_executor(
                self.pool, lambda: call(self.http_url, path, body, method, raw=raw, check=False)
            )
        except Exception as error:  # a REST call that did not answer
            self.count["rest.calls"] += 1
            self.count["rest.error"] += 1
            self.reasons[f"REST {label}: {type(error).__name__}: {str(error)[:60]}"] += 1
            return 0, None
        self.count["rest.calls"] += 1
        self.count[f"rest.{status // 100}xx"] += 1
        try:
            conforms(path, method or ("POST" if body is not None or raw else "GET"), status, answer)
        except AssertionError as error:
            if status not in LIMIT_STATUSES:
                self.reasons[f"REST {label}: not as docs/openapi.json says: {str(error)[:80]}"] += 1
                self.count["rest.undocumented"] += 1
        except Exception as error:  # jsonschema's own errors
            self.reasons[f"REST {label}: body off schema: {type(error).__name__}"] += 1
            self.count["rest.undocumented"] += 1
        message = json.dumps(answer)[:120] if answer is not None else ""
        if status in expect:
            pass
        elif status in LIMIT_STATUSES or (400 <= status < 500 and LIMIT_WORDS.search(message)):
            self.refusal(f"REST {status} {message}")
        else:
            self.count["rest.unexpected"] += 1
            self.reasons[f"REST {label}: {status} (expected {expect}) {message[:60]}"] += 1
        if status >= 500 or "internal" in message.lower():
            self.count["client.internal"] += 1
        return status, answer

    async def rest_round(self) -> None:
        now = time.monotonic()
        for name, until in list(self.rest_streams.items()):
            if until <= now:
                del self.rest_streams[name]
                await self.rest(
                    "terminate",
                    "/rest-api/vod/terminate",
                    {"localStreamName": name},
                    expect=(200, 404),
                )
        choice = self.rng.random()
        n = self.next_id()
        files = [f"bc{k}.mp4" for k in range(self.args.files)]
        if choice < 0.25 and len(self.rest_streams) < 3 and self.remaining() > 15:
            name = f"soak-rest-{n}"
            status, _ = await self.rest(
                "startup",
                "/rest-api/vod/startup",
                {
                    "uri": f"vod-live://{self.rng.choice(files)}",
                    "localStreamName": name,
                    "loop": True,
                },
            )
            if status == 200:
                self.rest_streams[name] = now + self.rng.uniform(15, 60)
        elif choice < 0.40 and self.rest_streams:
            await self.rest(
                "find",
                "/rest-api/vod/find",
                {"localStreamName": self.rng.choice(list(self.rest_streams))},
                expect=(200, 404),
            )
        elif choice < 0.50:
            await self.rest("find_all", "/rest-api/vod/find_all", expect=(200, 404))
        elif choice < 0.55:
            await self.rest("find_all POST", "/rest-api/vod/find_all", {}, expect=(200, 404))
        elif choice < 0.60:
            await self.rest(
                "find by uri",
                "/rest-api/vod/find",
                {"uri": "vod-live://clip.mp4"},
                expect=(200, 404),
            )
        elif choice < 0.67:
            await self.rest(
                "find unknown",
                "/rest-api/vod/find",
                {"localStreamName": f"nobody-{n}"},
                expect=(404,),
            )
        elif choice < 0.74:
            await self.rest(
                "terminate unknown",
                "/rest-api/vod/terminate",
                {"localStreamName": f"nobody-{n}"},
                expect=(404,),
            )
        elif choice < 0.80:
            await self.rest(
                "startup missing file",
                "/rest-api/vod/startup",
                {"uri": f"vod-live://missing-{n}.mp4", "localStreamName": f"soak-missing-{n}"},
                expect=(404,),
            )
        elif choice < 0.85:
            await self.rest(
                "startup vod://",
                "/rest-api/vod/startup",
                {"uri": "vod://clip.mp4", "localStreamName": f"soak-bad-{n}"},
                expect=(400,),
            )
        elif choice < 0.89:
            await self.rest(
                "startup no name",
                "/rest-api/vod/startup",
                {"uri": "vod-live://clip.mp4"},
                expect=(400,),
            )
        elif choice < 0.93 and self.rest_streams:
            await self.rest(
                "startup taken",
                "/rest-api/vod/startup",
                {
                    "uri": "vod-live://clip.mp4",
                    "localStreamName": self.rng.choice(list(self.rest_streams)),
                },
                expect=(409,),
            )
        else:
            await self.rest(
                "not JSON", "/rest-api/vod/find", raw=b"{not json", method="POST", expect=(400,)
            )

    # --- the limits

    async def limits_burst(self) -> None:
        """Push above every limit once (above its cap where one is configured)."""
        self.count["burst"] += 1
        for step in (
            self.burst_sessions,
            self.burst_plays,
            self.burst_publishes,
            self.burst_broadcasts,
            self.burst_startups,
            self.burst_messages,
        ):
            if self.remaining() < 10:
                return
            try:
                await asyncio.wait_for(step(), 60)
            except TimeoutError:
                self.failed("limits", f"{step.__name__} did not finish in 60 s")
            except Exception as error:
                self.failed("limits", f"{step.__name__}: {type(error).__name__}: {error}")

    def over_cap(self, what: str, accepted: int, cap: int) -> None:
        self.count["cap.tried"] += 1
        if cap and accepted > cap:
            self.count["cap.over"] += 1
            self.reasons[f"limits: {what}: {accepted} accepted, cap {cap}"] += 1

    async def burst_sessions(self) -> None:
        """Sessions from one address, above the per-address cap (meanwhile a client
        at another address must still get in); then, if a server-wide cap is set,
        sessions from many addresses above it. Each burst is held 2 s, then dropped."""
        per_address = self.caps.max_sessions_per_address
        held, refused = await self._open_sessions(
            per_address + 10 if per_address else self.args.burst_sessions,
            lambda index: BURST_ADDRESS,
            "sessions from one address",
        )
        self.over_cap("sessions from one address", len(held), per_address)
        other = "-"
        if refused:
            try:
                ws, _ = await self.establish(OTHER_ADDRESS)
                ws.drop()
                other = "got in"
                self.count["cap.others_ok"] += 1
            except Refused as error:
                other = f"refused too ({error})"
                if not self.caps.max_sessions:
                    self.failed("limits", f"another address refused too: {error}")
        self.notes[
            f"session burst from one address: {len(held)} in, {refused} refused; "
            f"another address {other}"[:110]
        ] += 1
        await self._hold_and_drop(held)
        cap = self.caps.max_sessions
        if not cap:
            return
        spread = max(1, (per_address or 100) - 5)  # per address, under its own cap
        before = Ws.live + self.publishers
        held, refused = await self._open_sessions(
            max(10, cap - before + 10),
            lambda index: f"127.0.2.{index // spread + 1}",
            "sessions in all",
        )
        # the bench's sessions open now (the load's own may have ended meanwhile)
        self.over_cap("sessions in all", Ws.live + self.publishers, cap)
        self.notes[
            f"server-wide session burst: {len(held)} in beside {before}, {refused} refused"
        ] += 1
        await self._hold_and_drop(held)

    async def _open_sessions(self, target: int, address: Any, what: str) -> tuple[list[Ws], int]:
        """Open up to ``target`` sessions, 10 at a time, until 5 are refused."""
        held: list[Ws] = []
        refused = 0
        for start in range(0, target, 10):
            results = await asyncio.gather(
                *(self._burst_session(address(start + i)) for i in range(min(10, target - start)))
            )
            for result in results:
                if isinstance(result, Ws):
                    held.append(result)
                else:
                    refused += 1
                    if not self.refusal(result):
                        self.reasons[f"limits: {what}: {result}"[:120]] += 1
            if refused >= 5:
                break
        return held, refused

    async def _hold_and_drop(self, held: list[Ws]) -> None:
        await asyncio.sleep(2.0)
        for ws in held:
            ws.drop(reset=self.rng.random() < 0.5)
            self.count["abrupt"] += 1

    async def _burst_session(self, source: str) -> Ws | str:
        try:
            ws, _ = await self.establish(source)
            return ws
        except Refused as refused:
            return str(refused)
        except OSError as error:
            return f"connect: {type(error).__name__}"

    async def _answers(self, ws: Ws, ids: list[str], seconds: float) -> tuple[int, list[str]]:
        """How many of the requests ``ids`` got an answer (setRemoteSDP or a running
        status), and the infos of those that FAILED."""
        answered: set[str] = set()
        failed: dict[str, str] = {}
        deadline = time.monotonic() + seconds
        while len(answered) + len(failed) < len(ids):
            message = await ws.next(deadline)
            if message is None:
                break
            if message["message"] == "setRemoteSDP":
                answered.add(message["data"][0])
            elif message["message"] == "notifyStreamStatusEvent":
                event = message["data"][0]
                if event["status"] == "FAILED":
                    answered.discard(event.get("mediaSessionId"))
                    failed[event.get("mediaSessionId")] = event.get("info") or ""
        return len(answered), list(failed.values())

    async def _count_refusals(self, what: str, infos: list[str], cap: int) -> None:
        for info in infos:
            if not self.refusal(info):
                self.failed("limits", f"{what}: FAILED {info}")
        if cap and not infos:
            self.reasons[f"limits: {what}: nothing refused above cap {cap}"] += 1

    async def burst_plays(self) -> None:
        cap = self.caps.max_plays_per_session
        session = await self.session_or_refusal("limits")
        if session is None:
            return
        ws, _ = session
        ids = [str(uuid.uuid1()) for _ in range(cap + 3 if cap else 8)]
        try:
            for media_id in ids:
                await ws.send(
                    "playStream",
                    {
                        "mediaSessionId": media_id,
                        "name": "vod-live://clip.mp4",
                        "published": False,
                        "hasVideo": True,
                        "hasAudio": True,
                        "mediaProvider": "MSE",
                        "sdp": MSE_OFFER,
                    },
                )
            accepted, infos = await self._answers(ws, ids, 10)
            self.over_cap("plays on one session", accepted, cap)
            await self._count_refusals("plays on one session", infos, cap)
            for media_id in ids:
                await ws.send(
                    "stopStream", {"mediaSessionId": media_id, "name": "vod-live://clip.mp4"}
                )
            await asyncio.sleep(0.5)
        finally:
            ws.drop(reset=True)
            self.count["abrupt"] += 1

    async def burst_publishes(self) -> None:
        cap = self.caps.max_publishes_per_session
        session = await self.session_or_refusal("limits")
        if session is None:
            return
        ws, _ = session
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        try:
            for kind in ("video", "audio"):
                pc.addTrack(EncodedTrack(kind))
            await pc.setLocalDescription(await pc.createOffer())
            ids = [str(uuid.uuid1()) for _ in range(cap + 2 if cap else 4)]
            n = self.next_id()
            for index, media_id in enumerate(ids):
                await ws.send(
                    "publishStream",
                    {
                        "mediaSessionId": media_id,
                        "name": f"soak-cap-pub-{n}-{index}",
                        "published": True,
                        "hasVideo": True,
                        "hasAudio": True,
                        "record": False,
                        "mediaProvider": "WebRTC",
                        "sdp": pc.localDescription.sdp,
                    },
                )
            accepted, infos = await self._answers(ws, ids, 10)
            self.over_cap("publishes on one session", accepted, cap)
            await self._count_refusals("publishes on one session", infos, cap)
            for index, media_id in enumerate(ids):
                await ws.send(
                    "unPublishStream",
                    {
                        "mediaSessionId": media_id,
                        "name": f"soak-cap-pub-{n}-{index}",
                        "published": True,
                    },
                )
            await asyncio.sleep(0.5)
        finally:
            ws.drop()
            try:
                await asyncio.wait_for(pc.close(), 10)
            except Exception:
                pass

    async def burst_broadcasts(self) -> None:
        """One MSE play per file (``capK.mp4``, links to the clip that only this
        burst plays), each on a session of its own: as many new broadcasts, to
        above the cap counting those already running."""
        cap = self.caps.max_broadcasts
        running = await self.broadcasts_running()
        count = min(self.cap_files, max(3, cap - running + 3) if cap else 4)
        sessions = []
        try:
            accepted, infos = 0, []
            for k in range(count):
                try:
                    ws, _ = await self.establish(f"127.0.3.{k // 20 + 1}")
                except Refused as refused:
                    if not self.refusal(str(refused)):
                        self.failed("limits", f"broadcasts: session refused: {refused}")
                    continue
                sessions.append(ws)
                media_id = str(uuid.uuid1())
                await ws.send(
                    "playStream",
                    {
                        "mediaSessionId": media_id,
                        "name": f"vod-live://cap{k}.mp4",
                        "published": False,
                        "hasVideo": True,
                        "hasAudio": True,
                        "mediaProvider": "MSE",
                        "sdp": MSE_OFFER,
                    },
                )
                ok, failed = await self._answers(ws, [media_id], 10)
                accepted += ok
                infos += failed
            # what runs now, held: others may have ended meanwhile, making room
            now_running = await self.broadcasts_running()
            self.over_cap("broadcasts running", now_running, cap)
            for info in infos:
                if not self.refusal(info):
                    self.failed("limits", f"broadcasts: FAILED {info}")
            if cap and not infos:  # others ended meanwhile: room enough, no refusal due
                self.notes[
                    f"broadcasts burst: {accepted} started beside {running}, "
                    f"{now_running} running, none refused (cap {cap})"
                ] += 1
            await asyncio.sleep(1.0)
        finally:
            for ws in sessions:
                ws.drop(reset=self.rng.random() < 0.5)
                self.count["abrupt"] += 1

    async def broadcasts_running(self) -> int:
        """vod-live streams find_all lists now (REST startups included)."""
        loop = asyncio.get_running_loop()
        try:
            status, answer, _ = await loop.run_in_executor(
                self.pool, lambda: call(self.http_url, "/rest-api/vod/find_all", check=False)
            )
        except Exception:
            return 0
        if status != 200 or not isinstance(answer, list):
            return 0
        return sum(str(s.get("uri", "")).startswith("vod-live://") for s in answer)

    async def burst_startups(self) -> None:
        cap = self.caps.max_rest_startups
        n = self.next_id()
        names = [f"soak-cap-{n}-{i}" for i in range(cap + 3 if cap else 6)]
        started = []
        refused = 0
        for index, name in enumerate(names):
            status, _answer = await self.rest(
                "startup (limits)",
                "/rest-api/vod/startup",
                {
                    "uri": f"vod-live://bc{index % self.args.files}.mp4",
                    "localStreamName": name,
                    "loop": True,
                },
                expect=(200,) if not cap or index < cap else (200, 400, 403, 409, 429, 503),
            )
            if status == 200:
                started.append(name)
            else:
                refused += 1
        self.over_cap("REST startups", len(started) + len(self.rest_streams), cap)
        if cap and not refused:
            self.reasons[f"limits: REST startups: nothing refused above cap {cap}"] += 1
        await asyncio.sleep(1.0)
        for name in started:
            await self.rest(
                "terminate (limits)", "/rest-api/vod/terminate", {"localStreamName": name}
            )

    async def burst_messages(self) -> None:
        """A flood of sendData (answered one by one) faster than the rate cap; read
        all the while, so the only reason to be cut off is the rate."""
        cap = self.caps.ws_message_rate
        session = await self.session_or_refusal("limits")
        if session is None:
            return
        ws, _ = session
        total = cap * 3 if cap else 300
        echoed = 0
        cut = ""

        async def read() -> None:
            nonlocal echoed, cut
            deadline = time.monotonic() + 10
            while echoed < total:
                try:
                    message = await ws.next(deadline)
                except Closed as closed:
                    cut = f"closed: {closed}"
                    return
                if message is None:
                    return
                if message["message"] == "DataStatusEvent":
                    echoed += 1
                elif message["message"] == "fail":
                    cut = (message["data"][0] or {}).get("info", "fail")

        reader = asyncio.ensure_future(read())
        try:
            for index in range(total):
                await ws.send("sendData", {"operationId": index, "payload": {"n": index}})
        except (ConnectionError, OSError) as error:
            cut = cut or f"send: {type(error).__name__}"
        await reader
        ws.drop()
        self.count["cap.tried"] += 1
        if cut:
            if not self.refusal(cut):  # cut off, but not saying it was for a limit
                self.failed("limits", f"message flood ({total} at once): {cut}")
        elif cap:
            self.count["cap.over"] += 1
            self.reasons[
                f"limits: {total} messages at once, cap {cap}/s: all echoed ({echoed})"
            ] += 1
        elif echoed < total:
            self.failed("limits", f"message flood: {echoed} of {total} echoed")

    # --- the load

    def pick_view(self) -> tuple[str, str, str]:
        """(kind, name, mode) of the next viewer."""
        rng = self.rng
        choices: list[tuple[float, str, str]] = [
            (30, "webrtc vod-live", "vod-live://clip.mp4"),
            (4, "webrtc vod-live", "vod-live://./clip.mp4"),  # an alias: the same broadcast
            (12, "webrtc vod", "vod://clip.mp4"),
            (4, "webrtc vod-end", "vod://short.mp4"),
            (12, "mse vod-live", "vod-live://clip.mp4"),
            (5, "mse vod", "vod://clip.mp4"),
        ]
        if self.rest_streams:
            choices.append((6, "webrtc rest", rng.choice(list(self.rest_streams))))
            choices.append((2, "mse rest", rng.choice(list(self.rest_streams))))
        now = time.monotonic()  # publishing by now, and for a while yet
        live = [
            name
            for name, (start, until) in self.publishing.items()
            if now - start > 5 and until - now > 6
        ]
        if live:
            choices.append((6, "webrtc published", rng.choice(live)))
            choices.append((3, "mse published", rng.choice(live)))
        if self.records:
            choices.append((2, "webrtc record", f"vod://{rng.choice(self.records)}"))
        pick = rng.uniform(0, sum(c[0] for c in choices))
        for weight, kind, name in choices:  # noqa: B007 (the pick is used after)
            pick -= weight
            if pick <= 0:
                break
        if kind.startswith("webrtc"):
            if kind == "webrtc vod-end":
                return kind, name, "end"
            mode = rng.choices(
                ["stop", "drop", "drop-offer", "drop-answer", "vanish"], [70, 12, 6, 9, 3]
            )[0]
        else:
            mode = rng.choices(["stop", "drop", "drop-media", "no-media"], [70, 15, 11, 4])[0]
        return kind, name, mode

    async def viewers_loop(self) -> None:
        """Keep about ``--viewers`` plays going, started at a bounded rate."""
        interval = 1.0 / self.args.starts_per_second
        while self.remaining() > 5:
            if self.viewers + self._starting() < self.args.viewers:
                kind, name, mode = self.pick_view()
                seconds = min(self.rng.uniform(8, 40), max(3.0, self.remaining() - 3))
                if kind.startswith("webrtc"):
                    coroutine = self.rtc_view(kind, name, seconds, mode)
                else:
                    coroutine = self.mse_view(kind, name, seconds, mode)
                self.spawn(coroutine, seconds + START_WAIT + VANISH_WAIT + 30).kind = "view"
            await asyncio.sleep(interval)

    def _starting(self) -> int:
        """Viewers spawned but not yet PLAYING (so the loop does not overshoot)."""
        return max(0, sum(getattr(t, "kind", "") == "view" for t in self.tasks) - self.viewers)

    async def publishers_loop(self) -> None:
        while self.remaining() > 15:
            if self.publishers < self.args.publishers:
                seconds = min(self.rng.uniform(8, 20), self.remaining() - 8)
                drop = self.rng.random() < 0.25
                self.spawn(self.publisher(seconds, self.rng.random() < 0.5, drop), seconds + 60)
            if self.rng.random() < 0.08:
                self.spawn(self.publish_dropped_mid_negotiation(), 30)
            await asyncio.sleep(1.5)

    async def churn_loop(self) -> None:
        while self.remaining() > 3:
            self.spawn(self.abrupt_session(), 30)
            if self.rng.random() < 0.35:
                self.spawn(self.bad_inputs(), 60)
            await asyncio.sleep(self.rng.uniform(0.5, 1.5))

    async def rest_loop(self) -> None:
        while self.remaining() > 3:
            try:
                await asyncio.wait_for(self.rest_round(), 30)
            except TimeoutError:
                self.failed("REST", "a round took over 30 s")
            await asyncio.sleep(self.rng.uniform(0.3, 1.2))
        for name in list(self.rest_streams):
            await self.rest(
                "terminate", "/rest-api/vod/terminate", {"localStreamName": name}, expect=(200, 404)
            )
        self.rest_streams.clear()

    async def limits_loop(self, load_seconds: float) -> None:
        bursts = self.args.limit_bursts
        for k in range(1, bursts + 1):
            at = self.load_end - load_seconds + load_seconds * k / (bursts + 1)
            await asyncio.sleep(max(0.0, at - time.monotonic()))
            if self.remaining() < 20:
                return
            await self.limits_burst()

    # --- samples

    async def server_viewers(self) -> tuple[str, str]:
        loop = asyncio.get_running_loop()
        try:
            status, answer, _ = await loop.run_in_executor(
                self.pool, lambda: call(self.http_url, "/rest-api/vod/find_all", check=False)
            )
        except Exception:
            return "?", "?"
        if status == 404:
            return "0", "0"
        if status != 200 or not isinstance(answer, list):
            return "?", "?"
        return str(sum(s.get("viewers", 0) for s in answer)), str(len(answer))

    async def sample(
        self, label: str, since: tuple[float, float, float] | None, t: float = 0.0
    ) -> tuple[Sample, tuple[float, float, float]]:
        row = server_sample(self.pid, label)
        now = (time.monotonic(), cpu_seconds(self.pid), cpu_seconds("self"))
        if since is not None:
            elapsed = now[0] - since[0]
            row.cpu = (now[1] - since[1]) / elapsed
            row.client = (now[2] - since[2]) / elapsed
        row.t = t
        row.sessions = Ws.live + self.publishers
        row.viewers = self.viewers
        row.server_viewers, row.streams = await self.server_viewers()
        row.counts = Tally(self.count)
        row.errors = self.log.scan()
        return row, now

    async def load(self, minutes: float, sample_seconds: float, rows: list[Sample]) -> None:
        load_seconds = minutes * 60
        start = time.monotonic()
        self.load_end = start + load_seconds
        loops = [
            asyncio.ensure_future(c)
            for c in (
                self.viewers_loop(),
                self.publishers_loop(),
                self.churn_loop(),
                self.rest_loop(),
                self.limits_loop(load_seconds),
            )
        ]
        since = (time.monotonic(), cpu_seconds(self.pid), cpu_seconds("self"))
        k = 0
        while True:
            k += 1
            at = start + min(k * sample_seconds, load_seconds)
            await asyncio.sleep(max(0.0, at - time.monotonic()))
            row, since = await self.sample(f"{(at - start) / 60:.2f}", since, (at - start) / 60)
            rows.append(row)
            print_row(row)
            if at >= start + load_seconds:
                break
        await asyncio.gather(*loops, return_exceptions=True)
        # every client ends by itself; give the slowest (a vanished peer) its time
        deadline = time.monotonic() + START_WAIT + VANISH_WAIT + 60
        while self.tasks and time.monotonic() < deadline:
            await asyncio.sleep(0.5)
        for task in list(self.tasks):
            self.reasons["client still running at the end: cancelled"] += 1
            task.cancel()
        await asyncio.sleep(0.5)

    async def wait_idle(self, limit: float) -> float:
        """Until find_all has nothing, no socket of ours is open and fds have not
        moved for 3 polls; returns how long it took."""
        start = time.monotonic()
        last: list[tuple[int, int]] = []
        while time.monotonic() - start < limit:
            _viewers, streams = await self.server_viewers()
            row = server_sample(self.pid, "")
            last = ([*last, (row.fds, row.threads)])[-3:]
            if streams == "0" and Ws.live == 0 and len(last) == 3 and len(set(last)) == 1:
                break
            await asyncio.sleep(2.0)
        return time.monotonic() - start

    async def warm_up(self) -> None:
        """One of each kind of client, so that pools that grow once are in the baseline."""
        self.load_end = time.monotonic() + 120
        await asyncio.gather(
            self.rtc_view("webrtc vod-live", "vod-live://clip.mp4", 4, "stop"),
            self.rtc_view("webrtc vod", "vod://clip.mp4", 4, "stop"),
            self.mse_view("mse vod-live", "vod-live://clip.mp4", 4, "stop"),
            self.mse_view("mse vod", "vod://clip.mp4", 4, "stop"),
            self.publisher(5, True, False),
            self.bad_inputs(),
            self.abrupt_session(),
        )
        status, _ = await self.rest(
            "startup",
            "/rest-api/vod/startup",
            {"uri": "vod-live://bc0.mp4", "localStreamName": "soak-warm", "loop": True},
        )
        if status == 200:
            await self.rtc_view("webrtc rest", "soak-warm", 3, "stop")
            await self.rest(
                "terminate", "/rest-api/vod/terminate", {"localStreamName": "soak-warm"}
            )


# --- printing

HEADER = (
    f"{'min':>6} {'RSS MiB':>7} {'fds':>5} {'thr':>4} {'srv CPU':>7} {'cli CPU':>7} "
    f"{'sess':>5} {'view':>4} {'srv v/strm':>10} {'plays st/ok/fail':>17} "
    f"{'pub st/ok/fail':>14} {'REST n 2xx/4xx/5xx':>19} {'abrupt':>6} "
    f"{'bad ok/unexp':>12} {'refused':>7} {'int.err':>7}"
)


LEGEND = (
    "sess: sessions the bench holds open; view: its plays now PLAYING; srv v/strm: "
    "viewers and streams find_all lists (VOD streams only);\nplays: started/as expected/"
    "failed; counts are cumulative; refused: refusals naming a limit; int.err: "
    "internal-error lines in the server's log so far"
)


def print_row(row: Sample) -> None:
    c = row.counts
    print(
        f"{row.label:>6} {row.rss / 2**20:>7.0f} {row.fds:>5} {row.threads:>4} "
        f"{row.cpu * 100:>6.0f}% {row.client * 100:>6.0f}% {row.sessions:>5} "
        f"{row.viewers:>4} {row.server_viewers + '/' + row.streams:>10} "
        f"{c['play.started']:>7}/{c['play.ok']:>5}/{c['play.failed']:>3} "
        f"{c['pub.started']:>6}/{c['pub.ok']:>3}/{c['pub.failed']:>3} "
        f"{c['rest.calls']:>6} {c['rest.2xx']:>4}/{c['rest.4xx']:>4}/{c['rest.5xx']:>2} "
        f"{c['abrupt']:>6} {c['bad.ok']:>7}/{c['bad.unexpected']:>4} {c['refused']:>7} "
        f"{row.errors:>7}",
        flush=True,
    )


def slope(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of (x, y) points."""
    n = len(points)
    if n < 2:
        return 0.0
    mx = sum(x for x, _ in points) / n
    my = sum(y for _, y in points) / n
    sxx = sum((x - mx) ** 2 for x, _ in points)
    return sum((x - mx) * (y - my) for x, y in points) / sxx if sxx else 0.0


def summary(
    soak: Soak,
    args: argparse.Namespace,
    base: Sample,
    rows: list[Sample],
    after: Sample,
    idle_seconds: float,
    base_fds: Tally,
    after_fds: Tally,
    late: Sample | None,
) -> bool:
    mib = 2**20
    print()
    print(f"{'':>22} {'baseline':>9} {'first':>7} {'last':>7} {'max':>7} {'after idle':>10}")
    for label, key, scale in (
        ("RSS MiB", "rss", mib),
        ("fds", "fds", 1),
        ("threads", "threads", 1),
    ):
        values = [getattr(r, key) / scale for r in rows]
        print(
            f"{label:>22} {getattr(base, key) / scale:>9.0f} {values[0]:>7.0f} "
            f"{values[-1]:>7.0f} {max(values):>7.0f} {getattr(after, key) / scale:>10.0f}"
        )
    total = args.minutes
    second = [r for r in rows if r.t >= total / 2 - 1e-9]
    per_minute = slope([(r.t, r.rss / mib) for r in second])
    mid_rss = second[0].rss / mib if second else base.rss / mib
    span = (second[-1].t - second[0].t) if len(second) > 1 else 0.0
    growth = per_minute * span / mid_rss * 100 if mid_rss else 0.0
    print(
        f"RSS slope over the second half ({len(second)} samples, {span:.1f} min): "
        f"{per_minute * 10:+.1f} MiB per 10 min; {growth:+.1f}% over that half "
        f"(from {mid_rss:.0f} MiB)"
    )
    print(f"idle after the load in {idle_seconds:.0f} s")
    moved = {
        kind: after_fds[kind] - base_fds[kind]
        for kind in set(base_fds) | set(after_fds)
        if after_fds[kind] != base_fds[kind]
    }
    if moved:
        print(
            "descriptors idle after the load against the baseline: "
            + ", ".join(
                f"{kind} {n:+d}" for kind, n in sorted(moved.items(), key=lambda kv: -kv[1])
            )
        )
    if late is not None:
        print(
            f"{args.linger:.0f} s later: {late.fds} fds, {late.threads} threads, "
            f"{late.rss / mib:.0f} MiB"
        )
    c = soak.count
    print(
        f"plays: {c['play.started']} started, {c['play.playing']} reached PLAYING, "
        f"{c['play.ok']} as expected, {c['play.failed']} failed, {c['play.raced']} ended "
        f"as they began (publisher gone, REST terminate); vanished WebRTC peers ended by "
        f"the server: {c['vanish.ended']}, left PLAYING: {c['vanish.hung']}"
    )
    print(
        f"publishes: {c['pub.started']} started, {c['pub.ok']} ok, {c['pub.failed']} failed; "
        f"recordings made: {len(soak.records)}"
    )
    print(
        f"REST: {c['rest.calls']} calls, {c['rest.2xx']} 2xx, {c['rest.4xx']} 4xx, "
        f"{c['rest.5xx']} 5xx, {c['rest.error']} without answer, {c['rest.unexpected']} "
        f"unexpected statuses, {c['rest.undocumented']} not as docs/openapi.json says"
    )
    print(
        f"abrupt disconnects: {c['abrupt']}; bad inputs: {c['bad.sent']} sent, "
        f"{c['bad.ok']} refused as expected, {c['bad.unexpected']} not"
    )
    print(
        f"limits: {c['burst']} bursts, {c['refused']} refused (expected), "
        f"{c['cap.over']} times a configured cap let more in; caps "
        f"{ {k: v for k, v in soak.caps.values.items() if v} or 'none configured' }"
    )
    for title, table in (
        ("refusals", soak.refusals),
        ("unexpected outcomes", soak.reasons),
        ("notes", soak.notes),
    ):
        if table:
            print(f"{title}:")
            for reason, n in table.most_common(15):
                print(f"  {n:>5}  {reason}")
    end = late or after  # the later look, if one was needed
    rss_ok = growth < args.rss_growth
    fds_ok = end.fds <= base.fds + args.fd_margin
    threads_ok = end.threads <= base.threads + args.thread_margin
    flat = rss_ok and fds_ok and threads_ok
    errors = soak.log.scan()
    print(
        f"flat: {'PASS' if flat else 'FAIL'} (RSS {growth:+.1f}% over the second half, "
        f"limit {args.rss_growth:g}%: {'ok' if rss_ok else 'no'}; fds idle ({end.label}) "
        f"{end.fds} vs baseline {base.fds} + {args.fd_margin}: {'ok' if fds_ok else 'no'}; "
        f"threads idle {end.threads} vs baseline {base.threads} + {args.thread_margin}: "
        f"{'ok' if threads_ok else 'no'})"
    )
    print(
        f"zero internal errors: {'PASS' if errors == 0 else 'FAIL'} ({errors} lines in "
        f"{soak.server.log_path}; {c['client.internal']} internal errors seen by clients)"
    )
    for excerpt in soak.log.excerpts:
        print("  ---")
        for line in excerpt:
            print(f"  {line}")
    return flat and errors == 0


class ServerCensus:
    """The server's own count of its objects (``testkit/census.py``), taken on demand."""

    def __init__(self, out: Path, pid: int) -> None:
        self.out, self.pid = out, pid

    async def take(self) -> dict[str, Any] | None:
        """A census after a full collection and a trim; None if none came (30 s)."""
        self.out.unlink(missing_ok=True)
        os.kill(self.pid, signal.SIGUSR2)
        for _ in range(600):
            await asyncio.sleep(0.05)
            if self.out.exists():
                return json.loads(self.out.read_text())
        print("census: the server wrote none")
        return None


def print_census(base: dict[str, Any], end: dict[str, Any], top: int = 25) -> None:
    """The types whose tracked counts grew most, RSS before and after a trim."""
    print(
        f"census: RSS {base['VmRSS'] // 1024} -> {end['VmRSS'] // 1024} MiB; after "
        f"malloc_trim {base['VmRSS_trimmed'] // 1024} -> {end['VmRSS_trimmed'] // 1024} MiB "
        f"(trim took {end['trim_ms']} ms); "
        f"gc-tracked objects {sum(base['types'].values())} -> {sum(end['types'].values())}"
    )
    grown = {name: n - base["types"].get(name, 0) for name, n in end["types"].items()}
    print("types grown most since the baseline (after a full collection):")
    for name, n in sorted(grown.items(), key=lambda kv: -kv[1])[:top]:
        if n > 0:
            print(f"  {n:>+8}  {name} ({end['types'][name]})")
    if end.get("traced_growth"):
        print(
            f"tracemalloc: {base['traced_kib']} -> {end['traced_kib']} KiB traced; "
            "lines grown most:"
        )
        for line in end["traced_growth"]:
            print(f"  {line}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--sample-seconds", type=float, default=60.0)
    parser.add_argument(
        "--viewers", type=int, default=60, help="plays kept going at once (WebRTC and MSE)"
    )
    parser.add_argument("--publishers", type=int, default=3)
    parser.add_argument(
        "--starts-per-second",
        type=float,
        default=3.0,
        help="at most this many new viewers per second",
    )
    parser.add_argument(
        "--limit-bursts", type=int, default=5, help="bursts above the limits, spread over the load"
    )
    parser.add_argument(
        "--burst-sessions",
        type=int,
        default=60,
        help="sessions a burst opens when no session cap is given",
    )
    parser.add_argument(
        "--files", type=int, default=8, help="copies of the clip that REST startups play"
    )
    parser.add_argument(
        "--server-config",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a line for the server's properties (repeatable)",
    )
    for cap in CAPS:
        parser.add_argument(
            "--" + cap.replace("_", "-"),
            type=int,
            default=None,
            help=f"the server's {cap.replace('_', ' ')} cap, to push above "
            f"(default: --server-config {cap}=N if given)",
        )
    parser.add_argument(
        "--rss-growth",
        type=float,
        default=10.0,
        help="flat: RSS growth allowed over the second half, %%",
    )
    parser.add_argument("--fd-margin", type=int, default=10)
    parser.add_argument("--thread-margin", type=int, default=10)
    parser.add_argument("--idle-timeout", type=float, default=150.0)
    parser.add_argument(
        "--linger",
        type=float,
        default=60.0,
        help="if fds or threads are above the baseline when idle, look again "
        "this much later (slow to go, or leaked?)",
    )
    parser.add_argument(
        "--client-addresses",
        type=int,
        default=8,
        help="loopback addresses the steady load's clients come from",
    )
    parser.add_argument("--seed", type=int, default=15)
    parser.add_argument("--strict", action="store_true", help="exit 1 unless both PASS")
    parser.add_argument(
        "--census",
        action="store_true",
        help="count the server's objects by type at the baseline and the end",
    )
    parser.add_argument(
        "--tracemalloc",
        type=int,
        default=0,
        metavar="FRAMES",
        help="with --census, also trace Python allocations (slow)",
    )
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="once at the smallest setting (6 s of load, two viewers), for the suite",
    )
    args = parser.parse_args()
    if args.smoke:
        args.minutes, args.sample_seconds, args.viewers, args.publishers = 0.1, 3.0, 2, 1
        args.limit_bursts, args.idle_timeout, args.linger, args.files = 0, 20.0, 2.0, 1
        args.client_addresses = 2
    settings_extra = {}
    for item in args.server_config:
        key, sep, value = item.partition("=")
        if not sep:
            parser.error(f"--server-config {item!r}: give KEY=VALUE")
        settings_extra[key.strip()] = value.strip()
    if args.smoke:  # unwatched broadcasts end in 2 s, not 30: the waits for idle are short
        settings_extra.setdefault("vod_stream_timeout", "2000")
    caps = Caps(
        {
            cap: getattr(args, cap)
            if getattr(args, cap) is not None
            else int(settings_extra[cap])
            if settings_extra.get(cap, "").isdigit()
            else 0
            for cap in CAPS
        }
    )
    require_loopback_only()
    folder = Path(tempfile.mkdtemp(prefix="wcsvod-soak-"))
    media = folder / "media"
    clip = make_mp4(media / "clip.mp4", seconds=30, profile="baseline", bitrate="300k")
    make_mp4(media / "short.mp4", seconds=5, profile="baseline", bitrate="300k")
    for k in range(args.files):  # REST startups and viewers of them
        shutil.copy(clip, media / f"bc{k}.mp4")
    # for the broadcasts burst only: enough names to go above the cap (hard links)
    for k in range(min(caps.max_broadcasts + 3, 1000) if caps.max_broadcasts else 4):
        os.link(clip, media / f"cap{k}.mp4")
    (media / "notes.txt").write_text("not a video\n")
    (media / ".hidden.mp4").write_bytes(clip.read_bytes())
    settings = {"media_dir": str(media), "vod_live_loop": "true", **settings_extra}
    wrap = None
    if args.census or args.tracemalloc:
        wrap = [sys.executable, "-m", "testkit.census", str(folder / "census.json"), "--trim"]
        if args.tracemalloc:
            wrap += ["--tracemalloc", str(args.tracemalloc)]
    server = ServerProcess(folder, settings, wrap=wrap).start()
    print(
        f"soak: {args.minutes:g} min, a row every {args.sample_seconds:g} s; "
        f"~{args.viewers} viewers, {args.publishers} publishers; server pid "
        f"{server.process.pid}, log {server.log_path}; extra settings {settings_extra or '-'}"
    )
    try:
        ok = asyncio.run(soak_run(args, server, media, caps))
    finally:
        server.stop()
        shutil.rmtree(media, ignore_errors=True)  # the log stays, for a look afterwards
    if args.strict and not ok:
        sys.exit(1)


async def soak_run(
    args: argparse.Namespace, server: ServerProcess, media: Path, caps: Caps
) -> bool:
    soak = Soak(args, server, media, caps)
    loop = asyncio.get_running_loop()

    def quiet(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        error = context.get("exception")
        soak.notes[
            f"client loop: {context.get('message', '')[:50]} "
            f"{type(error).__name__ if error else ''}"
        ] += 1

    loop.set_exception_handler(quiet)
    await soak.warm_up()
    warm = Tally(soak.count)
    if warm["play.failed"] or warm["pub.failed"]:
        print(f"warm-up had failures: {dict(soak.reasons)}")
    idle = await soak.wait_idle(args.idle_timeout)
    soak.count.clear()
    census = ServerCensus(server.workdir / "census.json", soak.pid) if server.wrap else None
    base_census = await census.take() if census else None
    base, _ = await soak.sample("base", None)
    base_fds = fd_census(soak.pid)
    print(f"baseline after a warm-up of each client kind, idle in {idle:.0f} s")
    print(LEGEND)
    print(HEADER)
    print_row(base)
    rows: list[Sample] = []
    await soak.load(args.minutes, args.sample_seconds, rows)
    soak.counter.stop()
    idle = await soak.wait_idle(args.idle_timeout)
    await asyncio.sleep(3.0)
    after, _ = await soak.sample("after", None)
    print_row(after)
    after_fds = fd_census(soak.pid)
    late = None
    if after.fds > base.fds or after.threads > base.threads:
        await asyncio.sleep(args.linger)  # slow release, or a leak?
        late, _ = await soak.sample(f"+{args.linger:.0f}s", None)
        print_row(late)
    if census and base_census:
        end_census = await census.take()
        if end_census:
            print_census(base_census, end_census)
    soak.pool.shutdown(wait=False)
    return summary(soak, args, base, rows, after, idle, base_fds, after_fds, late)


if __name__ == "__main__":
    main()
