"""The S3 source: an object read in SigV4-signed ranged GETs (botocore signs, treq fetches).

Only this module talks to S3. Chunks land in a sparse local file that the
MP4 reader reads while the download keeps a bounded distance ahead of it,
so playback starts after the header and the first chunks, and a 2 GB object
is never fetched at full speed nor held in memory.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Generator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import treq
from twisted.internet import defer, error
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from wcs.errors import InvalidName, NotFound, SourceUnavailable, WcsError
from wcs.media.mp4 import Mp4File
from wcs.metrics import METERS
from wcs.sources import ranged

log = Logger()

BUCKET = re.compile(r"^[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]$")

ACCESS_DENIED = "Access to the S3 object was denied (check aws_s3_credentials)"
UNREACHABLE = "S3 endpoint unreachable"
STALLED = "S3 download stalled"


@dataclass(frozen=True)
class S3Location:
    bucket: str
    key: str

    def __str__(self) -> str:
        return f"s3/{self.bucket}/{self.key}"


def parse(path: str) -> S3Location:
    """``s3/BUCKET/KEY`` (what follows ``vod://``) to a location, checked."""
    _, bucket, key = [*path.split("/", 2), "", ""][:3]
    if not BUCKET.match(bucket):
        raise InvalidName.because(f"{bucket!r} is not an S3 bucket name")
    if not key:
        raise InvalidName.because("the S3 key is empty")
    if ".." in key.split("/"):
        raise InvalidName.because("'..' is not allowed")
    if any(ord(c) < 32 for c in key):
        raise InvalidName.because("control characters are not allowed")
    return S3Location(bucket, key)


class S3Client:
    """Signed GETs against AWS, or any S3-compatible endpoint (path-style).

    Without an ``access_key`` requests go unsigned (public buckets).
    ``timeout`` is how long (s) one ranged GET may take before it is given up.
    """

    def __init__(
        self,
        clock: IReactorTime,
        *,
        region: str = "us-east-1",
        access_key: str = "",
        secret_key: str = "",
        endpoint: str = "",
        timeout: float,
        http: Any = treq,
    ) -> None:
        self.clock = clock
        self.region = region
        self._credentials: Any = None
        if access_key:  # botocore only when S3 has credentials: it adds 80 ms to a start
            from botocore.credentials import Credentials

            self._credentials = Credentials(access_key, secret_key)
        self.endpoint = endpoint
        self.timeout = timeout
        self.http = http

    def url(self, location: S3Location) -> str:
        key = quote(location.key, safe="/~")
        if self.endpoint:
            return f"{self.endpoint}/{location.bucket}/{key}"
        return f"https://{location.bucket}.s3.{self.region}.amazonaws.com/{key}"

    def signed_headers(self, url: str, headers: dict[str, str]) -> dict[str, str]:
        """The request's headers with SigV4 ``Authorization`` (none without credentials)."""
        if self._credentials is None:
            return headers
        from botocore.auth import S3SigV4Auth
        from botocore.awsrequest import AWSRequest

        request = AWSRequest(method="GET", url=url, headers=headers)
        S3SigV4Auth(self._credentials, "s3", self.region).add_auth(request)
        return dict(request.headers.items())

    def get_range(
        self, location: S3Location, start: int, end: int
    ) -> defer.Deferred[tuple[bytes, int]]:
        """Bytes ``start``–``end`` (inclusive): ``(body, total object size)``.

        Fails with a :class:`~wcs.errors.WcsError` with the info a viewer should see.
        """
        return self._get_range(location, start, end).addErrback(_count_error)

    @defer.inlineCallbacks
    def _get_range(
        self, location: S3Location, start: int, end: int
    ) -> Generator[defer.Deferred[Any], Any, tuple[bytes, int]]:
        url = self.url(location)
        headers = self.signed_headers(url, {"Range": f"bytes={start}-{end}"})
        limit = end - start + 1 + 64 * 1024  # a server that ignores Range is cut off
        try:
            request = self.http.get(url, headers={k: [v] for k, v in headers.items()})
            request.addTimeout(self.timeout, self.clock)
            response = yield request
            parts: list[bytes] = []
            received = [0]

            def keep(data: bytes) -> None:
                received[0] += len(data)
                if received[0] > limit and response.code in (200, 206):
                    raise SourceUnavailable("S3 server ignored the byte range")
                parts.append(data)

            reading = treq.collect(response, keep)
            reading.addTimeout(self.timeout, self.clock)
            yield reading
            body = b"".join(parts)
            METERS.s3_bytes += len(body)
        except (
            error.ConnectError,
            error.DNSLookupError,
            error.TimeoutError,
            defer.CancelledError,
            OSError,
        ) as failure:
            log.warn(
                "S3 {location}: {failure}", location=str(location), failure=type(failure).__name__
            )
            raise SourceUnavailable(UNREACHABLE) from None
        except WcsError:
            raise
        except defer.TimeoutError:
            log.warn("S3 {location}: no data for {t} s", location=str(location), t=self.timeout)
            raise SourceUnavailable(STALLED) from None
        except Exception as failure:  # the connection broke mid-body, and the like
            log.warn(
                "S3 {location}: transfer failed: {failure}", location=str(location), failure=failure
            )
            raise SourceUnavailable(ranged.DOWNLOAD_FAILED) from None
        if response.code == 404:
            raise NotFound()
        if response.code in (401, 403):
            raise SourceUnavailable(ACCESS_DENIED)
        if response.code == 416:
            raise SourceUnavailable("S3 object is empty")
        if response.code not in (200, 206):
            code = re.search(rb"<Code>([^<]{1,64})</Code>", body or b"")
            raise SourceUnavailable(
                f"S3 error {response.code}"
                + (f" ({code.group(1).decode('ascii', 'replace')})" if code else "")
            )
        total = _total_size(response, len(body))
        if response.code == 200:  # the server ignored Range: keep just what was asked
            body = body[start : end + 1]
        return body, total


def _count_error(failure: Any) -> Any:
    METERS.s3_errors += 1
    return failure


def _total_size(response: Any, length: int) -> int:
    content_range = response.headers.getRawHeaders(b"content-range", [b""])[0]
    match = re.match(rb"bytes \d+-\d+/(\d+)", content_range)
    return int(match.group(1)) if match else length


@defer.inlineCallbacks
def open_object(
    client: S3Client, location: S3Location, cache_dir: Path, label: str, progressive: bool
) -> Generator[defer.Deferred[Any], Any, tuple[Mp4File, ranged.RangedFile]]:
    """Fetch the header (and ``moov``, wherever it is) of an S3 object; returns
    ``(Mp4File, RangedFile)`` ready to play while the rest downloads.

    With ``progressive`` off (``vod_mp4_container_new=false``), the whole
    object is downloaded first, as older WCS versions did.
    """
    first, size = yield client.get_range(location, 0, ranged.CHUNK - 1)
    cache_dir.mkdir(parents=True, exist_ok=True)
    remote = ranged.RangedFile(
        lambda start, end: client.get_range(location, start, end).addCallback(lambda r: r[0]),
        size,
        cache_dir / f"{uuid.uuid4()}.part",
        label,
        client.clock,
    )
    try:
        remote.store(0, first)
        if not progressive:
            yield remote.ensure(0, size)
        yield ranged.prepare(remote)
        media = Mp4File(remote, label)
    except BaseException:
        remote.close()
        raise
    log.info(
        "{label}: {size} bytes in S3; playing after {got} bytes",
        label=label,
        size=size,
        got=remote.downloaded,
    )
    return media, remote
