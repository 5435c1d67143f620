"""TURN credentials as coturn's use-auth-secret checks them (the TURN REST API scheme)."""

from __future__ import annotations

import base64
import hashlib
import hmac

from wcs.access.turn import credential, ice_servers


def test_the_password_is_the_base64_hmac_sha1_of_the_username():
    username, password = credential("s3cret", 1_900_000_000)
    assert username == "1900000000:wcsvod"
    expected = base64.b64encode(
        hmac.new(b"s3cret", b"1900000000:wcsvod", hashlib.sha1).digest()).decode()
    assert password == expected


def test_ice_servers_expire_ttl_seconds_from_now_and_list_every_url():
    urls = ("turn:127.0.0.1:3478?transport=tcp", "turn:127.0.0.1:3478")
    [server] = ice_servers(urls, "s3cret", 600, now=1_000.7)
    assert server["urls"] == list(urls)
    assert server["username"] == "1600:wcsvod"
    assert server["credential"] == credential("s3cret", 1600)[1]


def test_no_turn_server_means_no_ice_servers():
    assert ice_servers((), "s3cret", 600, now=0) == []
    assert ice_servers(("turn:h",), "", 600, now=0) == []
