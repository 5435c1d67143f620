"""Composition: listeners as strports descriptions, one service each.

``wcs.tap`` installs the asyncio reactor when imported, as ``twistd`` needs;
this test process may already hold another reactor, so each check runs in a
fresh interpreter.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

from testkit.harness import REPO


def in_tap(tmp_path, code: str, composing: bool = True, **values: str):
    """Run ``code`` after ``from wcs import tap`` (and ``compose``, unless told not to
    import it) with these settings; its JSON answer."""
    overrides = {"media_dir": str(tmp_path), "state_dir": str(tmp_path / "state"), **values}
    script = textwrap.dedent(f"""
        import json
        from wcs import tap
        {"from wcs import compose" if composing else ""}
        from wcs.config import load
        settings = load(None, {overrides!r})
    """) + textwrap.dedent(code)
    done = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_the_supervisor_loads_none_of_the_media_stack(tmp_path):
    """With workers it only supervises: it starts on a third of a worker's CPU."""
    loaded = in_tap(tmp_path, """
        import sys
        tap.supervise(settings, tap.Options())
        print(json.dumps([name for name in ("wcs.compose", "av", "aiortc", "wcs.streams.registry")
                          if name in sys.modules]))
    """, composing=False, workers="2")
    assert loaded == []


def test_plain_listeners_on_the_bind_address(tmp_path):
    described = in_tap(tmp_path, "print(json.dumps(tap.listen_descriptions(settings)))",
                       **{"wss.port": "0", "https.port": "0", "hls.ssl.port": "0",
                          "bind_address": "127.0.0.1"})
    assert described == {"ws.port": "tcp:8080:interface=127.0.0.1:backlog=1024",
                         "http.port": "tcp:8081:interface=127.0.0.1:backlog=1024",
                         "hls.port": "tcp:8082:interface=127.0.0.1:backlog=1024",
                         "ice_tcp_port": "tcp:8083:interface=127.0.0.1:backlog=1024"}


def test_tls_listeners_use_the_pem_pair_and_quote_what_needs_it(tmp_path):
    described = in_tap(tmp_path, "print(json.dumps(tap.listen_descriptions(settings)))",
                       **{"ws.port": "0", "http.port": "0", "hls.port": "0",
                          "ice_tcp_port": "0", "bind_address": "::1",
                          "state_dir": str(tmp_path / "a:b")})
    assert set(described) == {"wss.port", "https.port", "hls.ssl.port"}
    tls = tmp_path / "a:b" / "tls"
    cert, key = (str(tls / name).replace(":", "\\:") for name in ("cert.pem", "key.pem"))
    assert described["wss.port"] == (f"ssl:8443:interface=\\:\\:1:backlog=1024:certKey={cert}"
                                     f":privateKey={key}")


def test_every_listener_is_a_service_that_fails_the_start_when_it_cannot_listen(tmp_path):
    services = in_tap(tmp_path, """
        from twisted.application.internet import StreamServerEndpointService
        composed = compose.compose(settings)
        print(json.dumps([s._raiseSynchronously for s in composed
                          if isinstance(s, StreamServerEndpointService)]))
    """, bind_address="127.0.0.1")
    assert services == [True] * 7  # ws, http, hls, ice-tcp; wss, https, hls.ssl


def test_freed_heap_goes_back_to_the_system_every_minute(tmp_path):
    # memory freed below a block still in use stays resident until trimmed
    # (the soak bench: 53 of 62 MiB of RSS growth was such memory)
    answer = in_tap(tmp_path, """
        from twisted.application.internet import TimerService
        def rss():
            with open("/proc/self/status") as status:
                return next(int(line.split()[1]) for line in status
                            if line.startswith("VmRSS:")) / 1024
        timers = [s for s in compose.compose(settings) if isinstance(s, TimerService)]
        blocks = [bytes([k % 251]) * 65536 for k in range(1000)]  # on the heap, touched
        top = bytes([1]) * 65536  # holds the heap's top: free() alone gives nothing back
        del blocks
        before = rss()
        for timer in timers:
            call, args, kwargs = timer.call
            call(*args, **kwargs)
        print(json.dumps({"intervals": [t.step for t in timers], "freed": before - rss()}))
    """)
    assert answer["intervals"] == [60.0]
    assert answer["freed"] > 40  # MiB, of the 64 freed

