"""Signed play tokens: access without a backend.

A token is ``<expires>.<signature>``: ``expires`` the Unix time (seconds) it
stops working, ``signature`` the unpadded base64url HMAC-SHA256, under
``play_token_secret``, of ``"<expires>:<name>"``, ``name`` being the stream
name exactly as the page plays it (``vod://movie.mp4``, ``show``), or
``records/<file>`` for a record's download. The expiry comes first so that a
name holding ``:`` (every uri does) cannot be read two ways.
"""

from __future__ import annotations

import base64
import hashlib
import hmac

#: Longer tokens are refused unread.
MAX_TOKEN = 256
#: A record's token names ``records/<file>``: a stream's never unlocks a record.
RECORDS = "records/"
#: Why a request without a token is refused (an HTTP caller hears 401).
NO_TOKEN = "no token"


def sign(secret: str, name: str, expires: int) -> str:
    """The token for ``name`` until ``expires`` (Unix seconds)."""
    digest = hmac.new(secret.encode(), f"{expires}:{name}".encode(), hashlib.sha256).digest()
    return f"{expires}." + base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def refusal(secret: str, name: str, token: object, now: float) -> str | None:
    """Why ``token`` does not open ``name`` at ``now`` (for the log), or None."""
    if token is None or token == "":
        return NO_TOKEN
    if not isinstance(token, str) or len(token) > MAX_TOKEN:
        return "a token must be a string of at most 256 characters"
    expires, dot, _signature = token.partition(".")
    if not dot or not expires.isdigit() or len(expires) > 12:
        return "malformed token (expected <expires>.<signature>)"
    if not hmac.compare_digest(sign(secret, name, int(expires)), token):
        return "token signature does not match this stream name"
    if int(expires) <= now:
        return "token expired"
    return None
