"""``twistd wcsvod`` as an operator meets it: help, bad settings, the REST root."""

from __future__ import annotations

import json
import ssl
import subprocess
import urllib.error
import urllib.request

from testkit.harness import VENV_BIN


def twistd(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(VENV_BIN / "twistd"), "-n", "--pidfile=", "wcsvod", *args],
                          capture_output=True, text=True, timeout=60)


def test_help_lists_the_options():
    result = twistd("--help")
    assert result.returncode == 0
    for option in ("--config", "--media-dir", "--set"):
        assert option in result.stdout


def test_bad_value_stops_the_start_with_one_line_naming_the_key(tmp_path):
    config = tmp_path / "bad.properties"
    config.write_text("# a comment\nvod_stream_timeout = -5\n")
    result = twistd("--config", str(config))
    assert result.returncode != 0
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines == [f"wcsvod: {config}:2: vod_stream_timeout='-5': must not be negative"]


def test_missing_media_dir_is_refused(tmp_path):
    result = twistd("--media-dir", str(tmp_path / "nowhere"))
    assert result.returncode != 0
    assert "media_dir=" in result.stderr and "not a directory" in result.stderr


def get(url: str) -> tuple[int, dict]:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    try:
        with urllib.request.urlopen(url, timeout=5, context=context) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_rest_root_answers_json_404_over_http_and_https(start_server):
    server = start_server()
    https = f"https://127.0.0.1:{server.ports['https.port']}"
    for base in (server.http_url, https):
        status, body = get(f"{base}/rest-api/nothing/here")
        assert status == 404
        assert body["status"] == 404 and "/rest-api/nothing/here" in body["message"]
    assert (server.workdir / "state" / "tls" / "cert.pem").exists()
    assert server.saw("self-signed certificate")


def test_wss_session(start_server):
    server = start_server()
    import socket

    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    raw = socket.create_connection(("127.0.0.1", server.ports["wss.port"]), timeout=5)
    tls = context.wrap_socket(raw, server_hostname="localhost")
    tls.sendall(b"GET /x HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n"
                b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                b"Sec-WebSocket-Version: 13\r\n\r\n")
    assert tls.recv(4096).startswith(b"HTTP/1.1 101")
    tls.close()
