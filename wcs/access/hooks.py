"""REST hooks: the operator's backend asked before a session, a play or a
publish is accepted, and told when they end.

Like WCS, every call is a POST of JSON to ``<rest_hook_url>/<method>``
(``connect``, ``playStream``, ``publishStream``; ``stopStream``,
``unPublishStream``, ``ConnectionStatusEvent``). A 2xx answer allows, and its
JSON object (if any) is handed back, so the backend may rewrite a stream
name; any other answer, a backend that is down, or one that has not answered
in ``rest_hook_timeout`` is a refusal. Nothing here blocks the reactor, and
what is in flight is bounded: a hung backend costs a refusal, not memory.
"""

from __future__ import annotations

import json
from typing import Any

from treq import collect as collect_body
from treq.client import HTTPClient
from treq.response import _Response
from twisted.internet.defer import CancelledError, Deferred, TimeoutError, fail
from twisted.internet.error import ConnectionDone, ConnectionLost
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.client import (
    Agent,
    HTTPConnectionPool,
    RequestTransmissionFailed,
    ResponseNeverReceived,
)
from twisted.web.iweb import IResponse

from wcs.errors import AccessRefused

log = Logger()

#: Questions waiting for the backend at once; more are refused at once.
MAX_ASKING = 256
#: Notices (no answer needed) in flight at once; more are dropped, and logged.
MAX_TELLING = 256
#: The most of an answer read; a longer one is a refusal.
MAX_ANSWER = 64 * 1024


class TooLong(Exception):
    """The backend's answer went past :data:`MAX_ANSWER`."""


class RestHooks:
    """The backend at ``url``, each call given ``timeout`` seconds in all."""

    def __init__(self, url: str, timeout: float, reactor: Any) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout
        self.reactor = reactor
        pool = HTTPConnectionPool(reactor, persistent=True)
        pool.maxPersistentPerHost = 16
        self._pool = pool
        self._http = HTTPClient(Agent(reactor, pool=pool, connectTimeout=timeout))
        # a retry goes on a connection of its own: the pool could hand it another
        # kept connection the backend had closed too (seen: both tries failed so)
        fresh = HTTPConnectionPool(reactor, persistent=False)
        self._fresh = HTTPClient(Agent(reactor, pool=fresh, connectTimeout=timeout))
        self.asking = 0
        self.telling = 0
        self.dropped = 0

    def ask(self, method: str, body: dict[str, Any]) -> Deferred[dict[str, Any]]:
        """The backend's answer to ``method``: its JSON object (``{}`` when it
        sent none) on 2xx; :class:`AccessRefused` naming why otherwise."""
        if self.asking >= MAX_ASKING:
            log.warn(
                "REST hook {method}: {n} questions already wait for the backend; refused",
                method=method,
                n=self.asking,
            )
            return fail(AccessRefused("the backend is not answering fast enough"))
        self.asking += 1
        asking = self._post(method, body)

        def answered(result: tuple[int, bytes]) -> dict[str, Any]:
            code, content = result
            if not 200 <= code < 300:
                raise AccessRefused(f"the backend answered {method} with HTTP {code}")
            try:
                answer = json.loads(content) if content.strip() else {}
            except (ValueError, UnicodeDecodeError):
                answer = {}
            return answer if isinstance(answer, dict) else {}

        def failed(failure: Failure) -> Failure:
            if not failure.check(AccessRefused):
                why = self._why(failure)
                log.warn(
                    "REST hook {method} to {url}: {why}; refused",
                    method=method,
                    url=self.url,
                    why=why,
                )
                return Failure(AccessRefused(f"the backend did not answer {method}: {why}"))
            return failure

        def done(result: Any) -> Any:
            self.asking -= 1
            return result

        return asking.addCallback(answered).addErrback(failed).addBoth(done)

    def tell(self, method: str, body: dict[str, Any]) -> None:
        """Send ``method`` and forget it: nothing waits for the answer."""
        if self.telling >= MAX_TELLING:
            self.dropped += 1
            if self.dropped in (1, 10, 100) or self.dropped % 1000 == 0:
                log.warn(
                    "REST hook {method} not sent: {n} notices already in flight "
                    "({dropped} dropped so far)",
                    method=method,
                    n=self.telling,
                    dropped=self.dropped,
                )
            return
        self.telling += 1

        def done(result: Any) -> None:
            self.telling -= 1
            if isinstance(result, Failure):
                log.info(
                    "REST hook {method} to {url}: {why}",
                    method=method,
                    url=self.url,
                    why=self._why(result),
                )

        self._post(method, body).addBoth(done)

    def _post(self, method: str, body: dict[str, Any]) -> Deferred[tuple[int, bytes]]:
        """POST ``body``; the status and at most :data:`MAX_ANSWER` bytes of
        the answer, all within the timeout.

        A kept connection the backend closed meanwhile fails before any answer
        (servers drop idle keep-alive connections when they like, and Twisted
        retries only idempotent requests): that POST is sent once more, on a
        new connection, within the same timeout.
        """
        data = json.dumps(body, separators=(",", ":")).encode()
        url = f"{self.url}/{method}"
        headers: dict[bytes | str, list[bytes | str]] = {b"Content-Type": [b"application/json"]}
        # a redirect is an answer other than 2xx, so a refusal: never followed
        # (a 303 would otherwise turn into a GET whose 2xx read as a yes)
        posting = self._http.post(url, data=data, headers=headers, allow_redirects=False)

        def again(failure: Failure) -> Deferred[_Response]:
            error = failure.value
            if isinstance(error, (ResponseNeverReceived, RequestTransmissionFailed)) and all(
                reason.check(ConnectionDone, ConnectionLost) for reason in error.reasons
            ):
                return self._fresh.post(url, data=data, headers=headers, allow_redirects=False)
            return fail(failure)

        def read(response: IResponse) -> Deferred[tuple[int, bytes]]:
            parts: list[bytes] = []
            size = [0]

            def collect(chunk: bytes) -> None:
                size[0] += len(chunk)
                if size[0] > MAX_ANSWER:
                    raise TooLong()
                parts.append(chunk)

            return collect_body(response, collect).addCallback(
                lambda _: (response.code, b"".join(parts))
            )

        return posting.addErrback(again).addCallback(read).addTimeout(self.timeout, self.reactor)

    def _why(self, failure: Failure) -> str:
        reasons = getattr(failure.value, "reasons", None)
        if reasons:  # the client's wrapper of what went wrong: say what did
            failure = reasons[0]
        if failure.check(TimeoutError, CancelledError):
            return f"no answer in {self.timeout * 1000:g} ms (rest_hook_timeout)"
        if failure.check(TooLong):
            return f"an answer longer than {MAX_ANSWER} bytes"
        assert failure.type is not None  # set as any Failure is made
        return failure.getErrorMessage() or failure.type.__name__

    def close(self) -> Deferred[None]:
        """Let go of the kept connections (at shutdown)."""
        return self._pool.closeCachedConnections()
