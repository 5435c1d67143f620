"""A plain HTTP client for the REST API, and the check against docs/openapi.json."""

from __future__ import annotations

import json
import ssl
import urllib.error
import urllib.request
from typing import Any

import jsonschema

from testkit.harness import REPO

SPEC = json.loads((REPO / "docs" / "openapi.json").read_text())
_CONTEXT = ssl.create_default_context()
_CONTEXT.check_hostname = False
_CONTEXT.verify_mode = ssl.CERT_NONE


def call(base: str, path: str, body: Any = None, method: str | None = None,
         raw: bytes | None = None, headers: dict[str, str] | None = None,
         check: bool = True) -> tuple[int, Any, dict[str, str]]:
    """One request; returns (status, decoded JSON or None, headers).

    With ``check``, the answer must be one the OpenAPI description documents.
    """
    data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    method = method or ("POST" if data is not None else "GET")
    request = urllib.request.Request(base + path, data=data, method=method)
    request.add_header("Content-Type", "application/json;charset=UTF-8")
    for name, value in (headers or {}).items():
        request.add_header(name, value)
    try:
        with urllib.request.urlopen(request, timeout=10, context=_CONTEXT) as response:
            status, content, answer_headers = response.status, response.read(), response.headers
    except urllib.error.HTTPError as failure:
        status, content, answer_headers = failure.code, failure.read(), failure.headers
    decoded = json.loads(content) if content else None
    if check:
        conforms(path, method, status, decoded)
    return status, decoded, dict(answer_headers)


def http_status(url: str) -> int:
    """The status of a plain GET of ``url`` (an error status too)."""
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def conforms(path: str, method: str, status: int, body: Any) -> None:
    """Fail unless the spec documents this answer and the body fits its schema."""
    operation = SPEC["paths"].get(path, {}).get(method.lower())
    assert operation is not None, f"{method} {path} is not in docs/openapi.json"
    response = operation["responses"].get(str(status))
    assert response is not None, f"{method} {path} answered {status}, not documented"
    if "$ref" in response:
        response = SPEC["components"]["responses"][response["$ref"].rsplit("/", 1)[1]]
    schema = response["content"]["application/json"]["schema"]
    jsonschema.validate(body, {**schema, "components": SPEC["components"]})
