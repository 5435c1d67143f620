"""REST plumbing that a live server cannot be made to show: a bug becomes a 500."""

from __future__ import annotations

import json

from twisted.web.test.requesthelper import DummyRequest

from wcs.web.vod import Operation


def test_an_internal_failure_is_a_500_with_its_reason():
    def broken(request):
        raise KeyError("oops")

    request = DummyRequest([b""])
    request.method = b"POST"
    request.path = b"/rest-api/vod/startup"
    body = Operation(broken, api_key="").render(request)
    assert request.responseCode == 500
    assert json.loads(body) == {"status": 500, "error": "Internal Server Error",
                                "message": "internal error: KeyError"}
