"""TURN credentials for browsers: the "TURN REST API" scheme coturn's
``use-auth-secret`` checks.

A browser behind a network that lets nothing through but a TURN server (over
TCP, say) needs that server's address and a credential in its
``iceServers``. Handing out the TURN server's own secret would let anyone
relay through it for ever; instead each credential is made for one page load
and expires: the username is the expiry time (UNIX seconds) and a label, the
password HMAC-SHA1 of that username under the shared secret, base64. The
TURN server checks both without asking us.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from typing import Any

#: The label after the expiry in every username (coturn logs it).
USER = "wcsvod"


def credential(secret: str, expires: int, user: str = USER) -> tuple[str, str]:
    """The username and password valid until ``expires`` (UNIX seconds)."""
    username = f"{expires}:{user}"
    digest = hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()
    return username, base64.b64encode(digest).decode()


def ice_servers(urls: tuple[str, ...], secret: str, ttl: int, now: float) -> list[dict[str, Any]]:
    """What a page gives ``RTCPeerConnection`` as ``iceServers`` (none without TURN)."""
    if not urls or not secret:
        return []
    username, password = credential(secret, int(now) + ttl)
    return [{"urls": list(urls), "username": username, "credential": password}]
