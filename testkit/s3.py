"""A real S3-compatible server on loopback (moto's server mode), and a small
proxy in front of it that checks credentials or cuts transfers on purpose."""

from __future__ import annotations

import hashlib
import http.client
import http.server
import re
import threading
from pathlib import Path

from testkit.harness import free_port

ACCESS_KEY = "AKIDWCSVODTEST"
SECRET_KEY = "wcsvod-test-secret-0123456789"
REGION = "us-east-1"
BUCKET = "media"


class S3Server:
    """moto's S3 in a thread, with a bucket of test files.

    moto keeps its buckets in one store per process, shared by every server
    started in it: two servers in one test process see each other's objects, so
    ``upload`` refuses to replace a key with a different file."""

    def __init__(self) -> None:
        from moto.server import ThreadedMotoServer

        self.port = free_port()
        self.server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)
        self.server.start()
        self.url = f"http://127.0.0.1:{self.port}"

    def client(self):  # type: ignore[no-untyped-def]
        import botocore.session

        return botocore.session.get_session().create_client(
            "s3", region_name=REGION, endpoint_url=self.url,
            aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY)

    def upload(self, files: dict[str, Path]) -> None:
        client = self.client()
        client.create_bucket(Bucket=BUCKET)
        for key, path in files.items():
            with path.open("rb") as handle:  # S3's ETag of a single PUT is its MD5
                digest = hashlib.file_digest(handle, "md5").hexdigest()
            try:
                held = client.head_object(Bucket=BUCKET, Key=key)["ETag"].strip('"')
            except client.exceptions.ClientError:
                held = None
            if held is not None and held != digest:
                raise RuntimeError(f"s3://{BUCKET}/{key} already holds another file (moto's "
                                   "store is shared by every server in a process)")
            with path.open("rb") as body:
                client.put_object(Bucket=BUCKET, Key=key, Body=body)

    def stop(self) -> None:
        self.server.stop()


class Proxy:
    """Forwards GETs to S3, refusing wrong credentials (moto does not check
    them) and, when asked, cutting every transfer that starts past a byte."""

    def __init__(self, upstream_port: int, cut_from: int | None = None,
                 stall: bool = False) -> None:
        self.requests: list[dict[str, str]] = []
        self.stalled = threading.Event()
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def do_GET(self):  # noqa: N802
                headers = dict(self.headers.items())
                proxy.requests.append({k.lower(): v for k, v in headers.items()})
                authorization = self.headers.get("Authorization", "")
                credential = re.search(r"Credential=([^/]+)/", authorization)
                if not credential or credential.group(1) != ACCESS_KEY:
                    body = (b"<?xml version='1.0'?><Error><Code>AccessDenied</Code>"
                            b"<Message>Access Denied</Message></Error>")
                    self.send_response(403)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                    return
                upstream = http.client.HTTPConnection("127.0.0.1", upstream_port, timeout=10)
                upstream.request("GET", self.path, headers=headers)
                answer = upstream.getresponse()
                body = answer.read()
                start = re.match(r"bytes=(\d+)-", headers.get("Range", "bytes=0-"))
                self.send_response(answer.status)
                for name, value in answer.getheaders():
                    if name.lower() not in ("transfer-encoding", "connection"):
                        self.send_header(name, value)
                self.end_headers()
                if cut_from is not None and start and int(start.group(1)) >= cut_from:
                    self.wfile.write(body[: len(body) // 3])
                    self.wfile.flush()
                    if stall:  # the transfer just stops, the connection stays open
                        proxy.stalled.wait(30)
                        return
                    self.connection.shutdown(2)  # the connection drops mid-body
                    return
                self.wfile.write(body)

        self.port = free_port()
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.stalled.set()
        self.server.shutdown()
        self.server.server_close()


def s3_settings(endpoint: str, access_key: str | None = None) -> dict[str, str]:
    return {"aws_s3_endpoint": endpoint,
            "aws_s3_credentials": f"{REGION};{access_key or ACCESS_KEY};{SECRET_KEY}"}
