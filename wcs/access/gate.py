"""The access rules every front door asks: the REST hooks, the play token
rule, both, or neither (then everything is allowed at once, synchronously).

The front doors build the hook bodies (they know the request's fields, as
WCS shapes them); the gate decides, and says why in :class:`AccessRefused`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from wcs.access import tokens
from wcs.access.hooks import RestHooks
from wcs.errors import AccessRefused, Unauthenticated
from wcs.streams.uri import MAX_URI

log = Logger()


class Gate:
    """``hooks`` (or None) and ``token_secret`` (or empty), applied in that
    order: a play needs a good token first, then the backend's yes."""

    def __init__(
        self,
        hooks: RestHooks | None = None,
        token_secret: str = "",
        clock: IReactorTime | None = None,
        node: str = "",
    ) -> None:
        self.hooks = hooks
        self.token_secret = token_secret
        self.clock = clock
        self.node = node  # the hook bodies' ``nodeId``

    @property
    def guarded(self) -> bool:
        """Whether any rule is set (records are public otherwise)."""
        return self.hooks is not None or bool(self.token_secret)

    def connect(self, body: Mapping[str, Any]) -> Deferred[None]:
        """A session may start (the ``connect`` hook)."""
        if self.hooks is None:
            return succeed(None)
        return self.hooks.ask("connect", dict(body)).addCallback(lambda _: None)

    def play(self, name: str, custom: Mapping[str, Any], body: Mapping[str, Any]) -> Deferred[str]:
        """The name to play (the backend may rewrite it), or AccessRefused."""
        refused = self._token_refusal(name, custom.get("token"))
        if refused is not None:
            log.info("play of {name!r} refused: {why}", name=name, why=refused)
            kind = Unauthenticated if refused == tokens.NO_TOKEN else AccessRefused
            return fail(kind(refused))
        return self._ask("playStream", name, body)

    def token(self, name: str, token: object) -> Deferred[None]:
        """The play token rule alone (a VOD playlist's segments: the hook was
        asked for the playlist)."""
        refused = self._token_refusal(name, token)
        if refused is not None:
            kind = Unauthenticated if refused == tokens.NO_TOKEN else AccessRefused
            return fail(kind(refused))
        return succeed(None)

    def publish(self, name: str, body: Mapping[str, Any]) -> Deferred[str]:
        """The name to publish under (the backend may rewrite it)."""
        return self._ask("publishStream", name, body)

    def record(
        self, file: str, query: Mapping[str, str], body: Mapping[str, Any]
    ) -> Deferred[None]:
        """A record's download: the token rule on ``records/<file>``, then the
        ``playStream`` hook with the query's fields as ``custom``."""
        refused = self._token_refusal(tokens.RECORDS + file, query.get("token"))
        if refused is not None:
            log.info("download of record {file!r} refused: {why}", file=file, why=refused)
            return fail(AccessRefused(refused))
        if self.hooks is None:
            return succeed(None)
        return self.hooks.ask("playStream", dict(body)).addCallback(lambda _: None)

    def tell(self, method: str, body: Mapping[str, Any]) -> None:
        """A notice the backend need not answer (a stream ended, a session closed)."""
        if self.hooks is not None:
            self.hooks.tell(method, dict(body))

    def sign(self, name: str, lifetime: float) -> str:
        """A token for ``name``, good for ``lifetime`` seconds (REST startup)."""
        assert self.token_secret and self.clock is not None
        return tokens.sign(self.token_secret, name, int(self.clock.seconds() + lifetime))

    def _token_refusal(self, name: str, token: object) -> str | None:
        if not self.token_secret:
            return None
        assert self.clock is not None
        return tokens.refusal(self.token_secret, name, token, self.clock.seconds())

    def _ask(self, method: str, name: str, body: Mapping[str, Any]) -> Deferred[str]:
        if self.hooks is None:
            return succeed(name)

        def renamed(answer: dict[str, Any]) -> str:
            new = answer.get("name")
            if isinstance(new, str) and new and len(new) <= MAX_URI and new != name:
                log.info(
                    "REST hook {method}: the backend renamed {old!r} to {new!r}",
                    method=method,
                    old=name,
                    new=new,
                )
                return new
            return name

        return self.hooks.ask(method, dict(body)).addCallback(renamed)


#: Nothing configured: every request allowed at once.
OPEN = Gate()
