"""The workers of one machine share one :class:`~wcs.cluster.store.Store`, kept by
their supervisor and reached over Twisted's AMP on a socket pair per worker.

The supervisor's side is :class:`HubProtocol` (one per worker: it answers from
the store and tells every worker when entries are terminated); a worker's side
is :class:`HubDirectory`, the :class:`~wcs.cluster.directory.Directory` its
registry uses. A worker whose supervisor is gone has no one to agree names with,
so it stops (``on_lost``); a worker that is gone lets go of all it held.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from typing import Any, cast

from twisted.internet.defer import Deferred, DeferredList, maybeDeferred, succeed
from twisted.internet.protocol import connectionDone
from twisted.logger import Logger
from twisted.protocols import amp
from twisted.python.failure import Failure

from wcs import errors
from wcs.cluster.admissions import Admissions
from wcs.cluster.directory import Terminated
from wcs.cluster.store import Entry, Load, Store, shallow
from wcs.errors import NotFound, WcsError
from wcs.limits import Limits

log = Logger()

#: The most bytes one AMP value may hold; longer JSON is cut into several keys.
AMP_VALUE = 65535


class Blob(amp.Argument):
    """Bytes however long (AMP caps one value at 64 KiB, so a long one goes as
    ``name``, ``name.1``, ``name.2``... in the same box)."""

    def encode(self, value: Any) -> bytes:
        return bytes(value)

    def decode(self, data: bytes) -> Any:
        return data

    def toBox(self, name: bytes, strings: Any, objects: Any, proto: Any) -> None:
        data = self.encode(objects[name.decode()])
        pieces = [data[i : i + AMP_VALUE] for i in range(0, len(data), AMP_VALUE)] or [b""]
        strings[name] = pieces[0]
        for number, piece in enumerate(pieces[1:], 1):
            strings[name + b"." + str(number).encode()] = piece

    def fromBox(self, name: bytes, strings: Any, objects: Any, proto: Any) -> None:
        pieces = [strings[name]]
        while (key := name + b"." + str(len(pieces)).encode()) in strings:
            pieces.append(strings[key])
        objects[name.decode()] = self.decode(b"".join(pieces))


class Json(Blob):
    """Any JSON value, however long."""

    def encode(self, value: Any) -> bytes:
        return json.dumps(value).encode()

    def decode(self, data: bytes) -> Any:
        return json.loads(data)


class Hello(amp.Command):
    arguments = [(b"worker", amp.Unicode())]
    response = []


class Live(amp.Command):
    arguments = [(b"entry", Json())]
    response = [(b"entry", Json())]


class Claim(amp.Command):
    arguments = [(b"entry", Json())]
    response = [(b"entry", Json())]


class Lookup(amp.Command):
    arguments = [(b"name", amp.Unicode())]
    response = [(b"entry", Json())]


class Hold(amp.Command):
    arguments = [(b"id", amp.Unicode())]
    response = [(b"entry", Json())]


class Release(amp.Command):
    arguments = [(b"id", amp.Unicode())]
    requiresAnswer = False


class Report(amp.Command):
    arguments = [(b"viewers", Json()), (b"load", Json())]
    requiresAnswer = False


class Select(amp.Command):
    arguments = [(b"criteria", Json())]
    response = [(b"entries", Json())]


class Terminate(amp.Command):
    arguments = [(b"ids", Json()), (b"info", amp.Unicode())]
    response = [(b"entries", Json())]


class Stop(amp.Command):
    arguments = [(b"ids", Json()), (b"info", amp.Unicode())]
    requiresAnswer = False


class Loads(amp.Command):
    arguments = []
    response = [(b"loads", Json())]


class Secret(amp.Command):
    arguments = []
    response = [(b"secret", amp.Unicode())]


class Enter(amp.Command):
    """A worker is about to open a session for ``address``: may it?"""

    arguments = [(b"address", amp.Unicode())]
    response = [(b"refused", amp.Unicode())]


class Leave(amp.Command):
    arguments = [(b"address", amp.Unicode())]
    requiresAnswer = False


class Take(amp.Command):
    """A worker takes a slot of a whole-server cap (a push): may it?"""

    arguments = [(b"kind", amp.Unicode())]
    response = [(b"refused", amp.Unicode())]


class Give(amp.Command):
    arguments = [(b"kind", amp.Unicode())]
    requiresAnswer = False


#: What a connection handed between workers carries besides its descriptor:
#: what it is ("media": a page's media WebSocket, "ice-tcp": a browser's ICE-TCP
#: connection), the socket's family, the WebSocket handshake it opened with
#: (replayed, unanswered, by the worker that adopts it), the media token (or
#: ICE username fragment) it named, the bytes read after that, and the
#: client's address (its session count).
_CONNECTION = [
    (b"kind", amp.Unicode(optional=True)),
    (b"family", amp.Integer()),
    (b"handshake", Blob()),
    (b"token", amp.Unicode()),
    (b"leftover", Blob()),
    (b"address", amp.Unicode()),
]


class HandOff(amp.Command):
    """Worker to supervisor: give this connection to ``worker``, whose session
    it belongs to; ``why`` is empty when that worker has taken it."""

    arguments = [(b"worker", amp.Unicode()), (b"socket", amp.Descriptor()), *_CONNECTION]
    response = [(b"why", amp.Unicode())]


class Adopt(amp.Command):
    """Supervisor to worker: a connection handed over for one of your sessions."""

    arguments = [(b"socket", amp.Descriptor()), *_CONNECTION]
    response = []


class Ask(amp.Command):
    """Worker to supervisor: ask ``worker`` a question (``what``, ``argument``)
    only it can answer (a picture of one of its plays, say)."""

    arguments = [(b"worker", amp.Unicode()), (b"what", amp.Unicode()), (b"argument", Json())]
    response = [(b"answer", Json())]


class AskAll(amp.Command):
    """Worker to supervisor: ask every other worker ``what``; their answers
    (those that could answer) in a list."""

    arguments = [(b"what", amp.Unicode()), (b"argument", Json())]
    response = [(b"answers", Json())]


class Asked(amp.Command):
    """Supervisor to worker: a question another worker asks of you."""

    arguments = [(b"what", amp.Unicode()), (b"argument", Json())]
    response = [(b"answer", Json())]


class Ended(amp.Command):
    """Supervisor to worker: these entries were terminated for everyone."""

    arguments = [(b"ids", Json()), (b"info", amp.Unicode())]
    requiresAnswer = False


def encode(entry: Entry | None) -> dict[str, Any] | None:
    return shallow(entry) if entry is not None else None


def decode(data: dict[str, Any] | None) -> Entry | None:
    return Entry(**data) if data is not None else None


def refusal(error: WcsError) -> dict[str, Any]:
    """A refusal as an answer crosses the wire: its kind, its info, and what
    else it carries (an access refusal's reason, a name taken)."""
    fields = {
        key: value
        for key, value in vars(error).items()
        if key != "info" and isinstance(value, (str, int, float, bool))
    }
    return {"error": type(error).__name__, "info": error.info, "fields": fields}


def answered(answer: dict[str, Any]) -> Any:
    """The value of an answer, or the refusal it carries raised again, as the kind
    of error it was (so the front door maps it as it would its own)."""
    if "error" not in answer:
        return answer["value"]
    kind = getattr(errors, answer["error"], None)
    if not (isinstance(kind, type) and issubclass(kind, WcsError)):
        kind = WcsError
    error = kind.__new__(kind)
    WcsError.__init__(error, answer["info"])
    for key, value in (answer.get("fields") or {}).items():
        setattr(error, key, value)
    raise error


def _unrefused(data: Any) -> Any:
    """``data``, unless it is a refusal (:func:`refusal`): then that is raised."""
    if isinstance(data, dict) and set(data) in ({"error", "info"}, {"error", "info", "fields"}):
        answered(data)
    return data


def _refused(failure: Failure) -> dict[str, Any]:
    if not failure.check(WcsError):
        log.failure("answering another worker failed", failure)
        return {"answer": refusal(WcsError(errors.INTERNAL_ERROR))}
    return {"answer": refusal(cast(WcsError, failure.value))}  # checked above


def _encode_all(entries: list[Entry]) -> list[dict[str, Any] | None]:
    return [encode(entry) for entry in entries]


class Detached(amp.AMP):
    """AMP whose answers are Deferreds of the caller's own: AMP adds its own
    errback (which drops the whole connection) to an answer's Deferred after
    the caller's callbacks, so an error raised in any of them would cut a worker
    off its supervisor; chained to a fresh Deferred, it stays the caller's."""

    def callRemote(self, commandType: type[amp.Command], *a: Any, **kw: Any) -> Any:
        answer = super().callRemote(commandType, *a, **kw)
        if answer is None:
            return None
        detached: Deferred[Any] = Deferred()
        answer.chainDeferred(detached)
        return detached


class Hub:
    """The supervisor's store (in memory, or a cluster's Redis), the session
    caps its workers share, and the workers connected to it."""

    def __init__(self, store: Any = None, admissions: Admissions | None = None) -> None:
        self.store = store if store is not None else Store()
        self.admissions = (
            admissions
            if admissions is not None
            else Admissions(Limits().max_sessions, Limits().max_sessions_per_address)
        )
        self.workers: dict[str, HubProtocol] = {}

    def protocol(self) -> HubProtocol:
        return HubProtocol(self)


class HubProtocol(Detached):
    """The supervisor's end of one worker's socket pair."""

    def __init__(self, hub: Hub) -> None:
        super().__init__()
        self.hub = hub
        self.worker = ""

    @Hello.responder
    def hello(self, worker: str) -> dict[str, Any]:
        self.worker = worker
        self.hub.workers[worker] = self
        self.hub.store.listen(worker, lambda ids, info: self.callRemote(Ended, ids=ids, info=info))
        return {}

    def _step(
        self,
        key: str,
        method: str,
        *args: Any,
        encoding: Callable[[Any], Any] = lambda value: value,
    ) -> Deferred[dict[str, Any]]:
        """One step of the store (which may answer later: Redis), as an answer."""
        step = maybeDeferred(getattr(self.hub.store, method), *args)

        def refused(failure: Failure) -> dict[str, Any]:
            failure.trap(WcsError)  # a refusal (a cap), answered as one
            return {key: refusal(cast(WcsError, failure.value))}  # trapped above

        return step.addCallbacks(lambda value: {key: encoding(value)}, refused)

    @Live.responder
    def live(self, entry: dict[str, Any]) -> Deferred[dict[str, Any]]:
        return self._step("entry", "live", self.worker, Entry(**entry), encoding=encode)

    @Claim.responder
    def claim(self, entry: dict[str, Any]) -> Deferred[dict[str, Any]]:
        return self._step("entry", "claim", self.worker, Entry(**entry), encoding=encode)

    @Lookup.responder
    def lookup(self, name: str) -> Deferred[dict[str, Any]]:
        return self._step("entry", "lookup", name, encoding=encode)

    @Hold.responder
    def hold(self, id: str) -> Deferred[dict[str, Any]]:
        return self._step("entry", "hold", self.worker, id, encoding=encode)

    @Release.responder
    def release(self, id: str) -> Deferred[dict[str, Any]]:
        return self._step("done", "release", self.worker, id)

    @Report.responder
    def report(self, viewers: dict[str, int], load: dict[str, Any]) -> Deferred[dict[str, Any]]:
        return self._step("done", "report", self.worker, viewers, Load(**load))

    @Select.responder
    def select(self, criteria: dict[str, Any]) -> Deferred[dict[str, Any]]:
        return self._step(
            "entries",
            "select",
            criteria.get("name"),
            criteria.get("uri"),
            criteria.get("entry_id"),
            encoding=_encode_all,
        )

    @Terminate.responder
    def terminate(self, ids: list[str], info: str) -> Deferred[dict[str, Any]]:
        return self._step("entries", "terminate", ids, info, encoding=_encode_all)

    @Stop.responder
    def stop(self, ids: list[str], info: str) -> Deferred[dict[str, Any]]:
        return self._step("done", "stop", ids, info)

    @Secret.responder
    def secret(self) -> Deferred[dict[str, Any]]:
        return self._step("secret", "secret")

    @Loads.responder
    def loads(self) -> Deferred[dict[str, Any]]:
        return self._step(
            "loads", "loads", encoding=lambda loads: [shallow(load) for load in loads]
        )

    @Enter.responder
    def enter(self, address: str) -> dict[str, Any]:
        return {"refused": self.hub.admissions.enter(self.worker, address)}

    @Leave.responder
    def leave(self, address: str) -> dict[str, Any]:
        self.hub.admissions.leave(self.worker, address)
        return {}

    @Take.responder
    def take(self, kind: str) -> dict[str, Any]:
        return {"refused": self.hub.admissions.take(self.worker, kind)}

    @Give.responder
    def give(self, kind: str) -> dict[str, Any]:
        self.hub.admissions.give(self.worker, kind)
        return {}

    @HandOff.responder
    def hand_off(
        self, worker: str, socket: int, address: str, **connection: Any
    ) -> Deferred[dict[str, Any]] | dict[str, Any]:
        """Pass the connection on to ``worker``; our copy of its descriptor is
        closed once that worker has answered (the descriptor has gone by then)."""
        target = self.hub.workers.get(worker)
        if target is None or target is self:
            os.close(socket)
            return {"why": f"worker {worker} is not running"}

        def taken(_: object) -> dict[str, Any]:
            os.close(socket)
            self.hub.admissions.move(address, self.worker, worker)
            return {"why": ""}

        def refused(failure: Failure) -> dict[str, Any]:
            os.close(socket)
            return {"why": f"worker {worker} did not take it: {failure.getErrorMessage()}"}

        adopting = target.callRemote(Adopt, socket=socket, address=address, **connection)
        return adopting.addCallbacks(taken, refused)

    @Ask.responder
    def ask(
        self, worker: str, what: str, argument: Any
    ) -> Deferred[dict[str, Any]] | dict[str, Any]:
        target = self.hub.workers.get(worker)
        if target is None:
            return {"answer": refusal(NotFound(f"worker {worker} is not running"))}
        return target.callRemote(Asked, what=what, argument=argument)

    @AskAll.responder
    def ask_all(self, what: str, argument: Any) -> Deferred[dict[str, Any]]:
        others = [protocol for worker, protocol in self.hub.workers.items() if protocol is not self]
        asking = [protocol.callRemote(Asked, what=what, argument=argument) for protocol in others]

        def gathered(results: list[tuple[bool, Any]]) -> dict[str, Any]:
            answers = [
                value["answer"]["value"]
                for ok, value in results
                if ok and "value" in value["answer"]
            ]
            return {"answers": answers}

        return DeferredList(asking, consumeErrors=True).addCallback(gathered)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        super().connectionLost(reason)
        if self.worker and self.hub.workers.get(self.worker) is self:
            del self.hub.workers[self.worker]
            self.hub.admissions.drop(self.worker)
            maybeDeferred(self.hub.store.drop, self.worker).addErrback(
                lambda failure: log.warn(
                    "dropping worker {worker} failed: {why}",
                    worker=self.worker,
                    why=failure.getErrorMessage(),
                )
            )
            log.info("worker {worker} is gone; what it held is released", worker=self.worker)


class HubDirectory(Detached):
    """A worker's :class:`~wcs.cluster.directory.Directory`: its supervisor's store."""

    def __init__(self, worker: str, on_lost: Callable[[], None]) -> None:
        super().__init__()
        self.worker = worker
        self._on_lost = on_lost
        self._terminated: Terminated | None = None
        #: Takes a connection another worker handed over (the signalling's ``adopt``).
        self.adopter: Callable[..., None] | None = None
        #: What answers other workers' questions, by question.
        self._answerers: dict[str, Callable[[Any], Any]] = {}

    def connectionMade(self) -> None:
        super().connectionMade()
        self.callRemote(Hello, worker=self.worker)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        super().connectionLost(reason)
        self._on_lost()

    def listen(self, terminated: Terminated) -> None:
        self._terminated = terminated

    @Ended.responder
    def ended(self, ids: list[str], info: str) -> dict[str, Any]:
        if self._terminated is not None:
            self._terminated(ids, info)
        return {}

    @Adopt.responder
    def adopt(self, socket: int, **connection: Any) -> dict[str, Any]:
        """Serve a connection handed over for one of our sessions (our copy of
        the descriptor is ours to close: the adopting transport has its own)."""
        try:
            if self.adopter is None:
                raise RuntimeError("this worker takes no connections")
            self.adopter(socket, **connection)
        finally:
            os.close(socket)
        return {}

    @Asked.responder
    def asked(self, what: str, argument: Any) -> Deferred[dict[str, Any]]:
        answerer = self._answerers.get(what)
        if answerer is None:
            return succeed({"answer": refusal(NotFound(f"no answer to {what!r} here"))})
        return maybeDeferred(answerer, argument).addCallbacks(
            lambda answer: {"answer": {"value": answer}}, _refused
        )

    def answer(self, what: str, answerer: Callable[[Any], Any]) -> None:
        """Answer other workers' ``what`` with ``answerer(argument)`` (JSON in and out)."""
        self._answerers[what] = answerer

    def ask_all(self, what: str, argument: Any) -> Deferred[list[Any]]:
        """Every other worker's answer to ``what`` (those that answered)."""
        return self.callRemote(AskAll, what=what, argument=argument).addCallback(
            lambda answer: answer["answers"]
        )

    def ask(self, worker: str, what: str, argument: Any) -> Deferred[Any]:
        """``worker``'s answer to ``what``; fails with the error it answered with."""
        return self.callRemote(Ask, worker=worker, what=what, argument=argument).addCallback(
            lambda answer: answered(answer["answer"])
        )

    # the session caps, counted by the supervisor for every worker

    def enter(self, address: str) -> Deferred[str]:
        """ "" if a session from ``address`` may open, else the refusal's info."""
        return self.callRemote(Enter, address=address).addCallback(lambda answer: answer["refused"])

    def leave(self, address: str) -> None:
        self.callRemote(Leave, address=address)

    def take(self, kind: str) -> Deferred[str]:
        """ "" if a slot of ``kind`` (a push) is this worker's now, else the refusal's info."""
        return self.callRemote(Take, kind=kind).addCallback(lambda answer: answer["refused"])

    def give(self, kind: str) -> None:
        self.callRemote(Give, kind=kind)

    def hand_off(self, worker: str, socket: int, **connection: Any) -> Deferred[str]:
        """Give a connection (a duplicate of its descriptor, which the caller
        closes once this fires) to ``worker``; fires with "" once taken, else why not."""
        return self.callRemote(HandOff, worker=worker, socket=socket, **connection).addCallback(
            lambda answer: answer["why"]
        )

    def _entry(self, command: type[amp.Command], **arguments: Any) -> Deferred[Entry | None]:
        return self.callRemote(command, **arguments).addCallback(
            lambda answer: decode(_unrefused(answer["entry"]))
        )

    def live(self, entry: Entry) -> Deferred[Entry]:
        return self._entry(Live, entry=encode(entry))  # type: ignore[return-value]

    def claim(self, entry: Entry) -> Deferred[Entry | None]:
        return self._entry(Claim, entry=encode(entry))

    def lookup(self, name: str) -> Deferred[Entry | None]:
        return self._entry(Lookup, name=name)

    def hold(self, entry_id: str) -> Deferred[Entry | None]:
        return self._entry(Hold, id=entry_id)

    def release(self, entry_id: str) -> None:
        self.callRemote(Release, id=entry_id)

    def report(self, viewers: dict[str, int], load: Load) -> None:
        self.callRemote(Report, viewers=viewers, load=shallow(load))

    def select(
        self, name: str | None = None, uri: str | None = None, entry_id: str | None = None
    ) -> Deferred[list[Entry]]:
        criteria = {"name": name, "uri": uri, "entry_id": entry_id}
        return self.callRemote(Select, criteria=criteria).addCallback(
            lambda answer: [Entry(**data) for data in answer["entries"]]
        )

    def terminate(self, entry_ids: list[str], info: str) -> Deferred[list[Entry]]:
        return self.callRemote(Terminate, ids=entry_ids, info=info).addCallback(
            lambda answer: [Entry(**data) for data in answer["entries"]]
        )

    def stop(self, media_ids: list[str], info: str) -> None:
        self.callRemote(Stop, ids=media_ids, info=info)

    def loads(self) -> Deferred[list[Load]]:
        return self.callRemote(Loads).addCallback(
            lambda answer: [Load(**data) for data in answer["loads"]]
        )

    def secret(self) -> Deferred[str]:
        return self.callRemote(Secret).addCallback(lambda answer: answer["secret"])
