"""Reads ``flashphoner.properties`` once, at start, into a typed :class:`Settings`.

This is the only module that reads the properties file.  Every value is
checked here, so that a bad one stops the start with the key named, rather
than failing later in the middle of a stream.
"""

from __future__ import annotations

import ipaddress
import os
import re
import socket
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from twisted.logger import Logger

from wcs import limits
from wcs.limits import Limits
from wcs.streams.ladder import DEFAULT as DEFAULT_LADDER
from wcs.streams.ladder import Ladder

log = Logger()

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CONFIG = REPO_ROOT / "conf" / "flashphoner.properties"


class ConfigError(Exception):
    """A setting that cannot be used; the message names the key and the value."""


@dataclass(frozen=True)
class S3Credentials:
    """``aws_s3_credentials=zone;login;hash``: region, access key id, secret."""

    region: str
    access_key: str
    secret_key: str = field(repr=False)


@dataclass(frozen=True)
class Settings:
    """Every setting the server uses, already checked and converted."""

    media_dir: Path = REPO_ROOT / "media"
    ws_port: int = 8080
    wss_port: int = 8443
    http_port: int = 8081
    https_port: int = 8444
    hls_port: int = 8082
    hls_ssl_port: int = 8445
    bind_address: str = "0.0.0.0"
    announced_ips: tuple[str, ...] = ()
    ice_tcp_port: int = 8083
    turn_url: tuple[str, ...] = ()
    turn_secret: str = field(default="", repr=False)
    turn_ttl: int = 86400
    vod_live_loop: bool = False
    transcoding_disabled: bool = False
    #: The quality ladder below each stream (HLS ABR's variants, WebRTC's renditions).
    hls_abr_profiles: Ladder = field(default_factory=lambda: Ladder.parse(DEFAULT_LADDER))
    #: WebRTC viewers moved between the source and the ladder by their bandwidth.
    webrtc_abr: bool = True
    vod_stream_timeout: int = 30000
    hls_idle_timeout: int = 20000
    vod_mp4_container_new: bool = True
    aws_s3_credentials: S3Credentials | None = None
    aws_s3_endpoint: str = ""
    aws_s3_request_timeout: int = 10000
    tls_cert: Path | None = None
    tls_key: Path | None = None
    state_dir: Path = field(
        default_factory=lambda: (
            Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state") / "wcsvod"
        )
    )
    ping_interval: int = 5000
    ping_probes: int = 10
    ws_max_message_size: int = 256 * 1024
    ws_send_buffer: int = 1024 * 1024
    websdk_dir: Path | None = None
    rest_api_key: str = field(default="", repr=False)
    rest_hook_url: str = ""
    rest_hook_timeout: int = 3000
    play_token_secret: str = field(default="", repr=False)
    rtmp_transponder_full_url: bool = False
    rtmp_transponder_stream_name_prefix: str = "rtmp_"
    rtmp_push_retries: int = 3
    #: PEM certificates an ``rtmps://`` server's must chain to (None: the system's CAs).
    rtmp_push_ca_file: Path | None = None
    access_log: bool = False
    #: ``text`` (Twisted's lines) or ``json`` (one object a line: :mod:`wcs.logs`).
    log_format: str = "text"
    record_template: str = "{streamName}-{startTime}"
    webrtc_sender: str = "fast"
    #: A sample's equal-size packets to a viewer as one UDP GSO datagram.
    webrtc_udp_gso: bool = True
    #: AES-GCM SRTP protected by the C loop itself, not by libsrtp.
    webrtc_own_srtp: bool = True
    #: Opus in each WebRTC audio packet (ms): 20, or up to 120 to send fewer datagrams.
    webrtc_audio_packet_ms: int = 20
    vod_audio_cache_size: int = 1024
    rest_cors_origins: tuple[str, ...] = ()
    ws_allowed_origins: tuple[str, ...] = ()
    #: Worker processes: 0 is ``auto``, one per core this process may run on.
    workers: int = 0
    cluster_redis_url: str = field(default="", repr=False)  # may hold a password
    cluster_address: str = ""
    cluster_node: str = ""
    limits: Limits = Limits()

    @property
    def relay_address(self) -> str:
        """Where other workers (other nodes, in a cluster) reach this one's relay."""
        if not self.cluster_redis_url:
            return "127.0.0.1"
        if self.cluster_address:
            return self.cluster_address
        if self.announced_ips:
            return self.announced_ips[0]
        return "" if self.bind_address in ("0.0.0.0", "::") else self.bind_address

    @property
    def node(self) -> str:
        """This machine's name in the cluster (unique for as long as it runs)."""
        return self.cluster_node or f"{socket.gethostname()}-{os.getpid()}"

    @property
    def worker_count(self) -> int:
        """How many workers ``workers`` means on this machine."""
        if self.workers:
            return self.workers
        try:
            return max(1, len(os.sched_getaffinity(0)))
        except AttributeError:  # not Linux
            return max(1, os.cpu_count() or 1)


# --- value converters: each takes the raw text and returns the typed value or
# raises ValueError with a short reason.


def _port(text: str) -> int:
    """A TCP port, or 0 to leave that listener off."""
    if not text.isdigit() or not 0 <= int(text) <= 65535:
        raise ValueError("must be a port number from 1 to 65535, or 0 for off")
    return int(text)


def _bool(text: str) -> bool:
    lowered = text.lower()
    if lowered not in ("true", "false"):
        raise ValueError("must be true or false")
    return lowered == "true"


def _non_negative(text: str) -> int:
    try:
        number = int(text)
    except ValueError:
        raise ValueError("must be a whole number") from None
    if number < 0:
        raise ValueError("must not be negative")
    return number


def _positive(text: str) -> int:
    number = _non_negative(text)
    if number == 0:
        raise ValueError("must be greater than zero")
    return number


def _address(text: str) -> str:
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        raise ValueError("must be an IP address") from None


def _addresses(text: str) -> tuple[str, ...]:
    return tuple(_address(part.strip()) for part in text.split(",") if part.strip())


def _s3_credentials(text: str) -> S3Credentials | None:
    if not text:
        return None
    parts = text.split(";")
    if len(parts) != 3 or not all(part.strip() for part in parts):
        raise ValueError("must be three non-empty parts: zone;login;hash")
    region, access, secret = (part.strip() for part in parts)
    return S3Credentials(region, access, secret)


def _url(text: str) -> str:
    if text and not text.startswith(("http://", "https://")):
        raise ValueError("must be an http:// or https:// URL, or empty for AWS")
    return text.rstrip("/")


def _hook_url(text: str) -> str:
    if text and (
        not text.startswith(("http://", "https://"))
        or "?" in text
        or "#" in text
        or not text.split("://", 1)[1].strip("/")
    ):
        raise ValueError(
            "must be the backend's http:// or https:// URL (methods are "
            "POSTed to <url>/<method>), or empty for no hooks"
        )
    return text.rstrip("/")


def _secret_text(text: str) -> str:
    if text and (len(text) < 16 or not text.isprintable()):
        raise ValueError("must be at least 16 printable characters, or empty for no tokens")
    return text


def _key_prefix(text: str) -> str:
    if len(text) > 64 or not all(c.isalnum() or c in "-_." for c in text):
        raise ValueError("must be at most 64 letters, digits, '-', '_' or '.' (or empty)")
    return text


def _redis_url(text: str) -> str:
    if text and not text.startswith(("redis://", "rediss://", "unix://")):
        raise ValueError(
            "must be a redis://host:port/db URL (or rediss://, unix://), or empty for one machine"
        )
    return text


def _node(text: str) -> str:
    if text and (len(text) > 64 or not all(c.isalnum() or c in "-_." for c in text)):
        raise ValueError("must be at most 64 letters, digits, '-', '_' or '.'")
    return text


_TURN_URL = re.compile(
    r"turns?:(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+)(:[0-9]{1,5})?(\?transport=(udp|tcp))?"
)


def _turn_urls(text: str) -> tuple[str, ...]:
    """TURN server URLs (RFC 7065: ``turn:host[:port][?transport=udp|tcp]`` or
    ``turns:``), comma-separated, as browsers take them in ``iceServers``."""
    urls = tuple(part.strip() for part in text.split(",") if part.strip())
    for url in urls:
        found = _TURN_URL.fullmatch(url)
        port = int(found[2][1:]) if found and found[2] else 1
        if found is None or not 0 < port < 65536:
            raise ValueError(
                f"{url!r} is not a TURN URL like turn:turn.example.com:3478?transport=tcp"
            )
    return urls


def _turn_secret(text: str) -> str:
    if text and (not text.isprintable() or any(c.isspace() for c in text)):
        raise ValueError("must be the TURN server's static-auth-secret, printable, no spaces")
    return text


def _path(text: str) -> Path:
    if not text:
        raise ValueError("must be a path")
    return Path(text).expanduser()


def _optional_path(text: str) -> Path | None:
    return Path(text).expanduser() if text else None


def _token(text: str) -> str:
    if text and (len(text) < 8 or not text.isprintable() or " " in text):
        raise ValueError("must be at least 8 printable characters without spaces, or empty")
    return text


def _template(text: str) -> str:
    try:
        text.format(streamName="s", startTime="t", mediaSessionId="m")
    except (KeyError, IndexError, ValueError):
        raise ValueError("may use only {streamName}, {startTime} and {mediaSessionId}") from None
    if not text:
        raise ValueError("must not be empty")
    return text


def _sender(text: str) -> str:
    if text not in ("fast", "aiortc"):
        raise ValueError("must be fast or aiortc")
    return text


def _audio_packet_ms(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value not in range(20, 121, 20):
        raise ValueError("must be 20, 40, 60, 80, 100 or 120 (ms of 20 ms Opus frames)")
    return value


def _log_format(text: str) -> str:
    if text not in ("text", "json"):
        raise ValueError("must be text or json")
    return text


#: Most worker processes one server may run.
MAX_WORKERS = 256


def _workers(text: str) -> int:
    """``auto`` (0: one per core) or a number of worker processes."""
    if text.lower() == "auto":
        return 0
    if not text.isdigit() or not 1 <= int(text) <= MAX_WORKERS:
        raise ValueError(f"must be auto or a number from 1 to {MAX_WORKERS}")
    return int(text)


def _origins(text: str) -> tuple[str, ...]:
    """Web origins (``https://host[:port]``), comma-separated, or ``*`` for any."""
    origins = tuple(part.strip().rstrip("/").lower() for part in text.split(",") if part.strip())
    for origin in origins:
        scheme, sep, host = origin.partition("://")
        if origin != "*" and (
            scheme not in ("http", "https") or not sep or not host or "/" in host
        ):
            raise ValueError(f"{origin!r} is not an origin like https://example.com:8080 or *")
    return origins


def _secret(value: Any) -> str:
    """How a value is shown in an error: credentials never reach the logs."""
    return "<hidden>"


# key in the properties file -> (Settings attribute, converter, how to show it)
_KEYS: dict[str, tuple[str, Callable[[str], Any], Callable[[Any], str]]] = {
    "media_dir": ("media_dir", _path, repr),
    "ws.port": ("ws_port", _port, repr),
    "wss.port": ("wss_port", _port, repr),
    "http.port": ("http_port", _port, repr),
    "https.port": ("https_port", _port, repr),
    "hls.port": ("hls_port", _port, repr),
    "hls.ssl.port": ("hls_ssl_port", _port, repr),
    "bind_address": ("bind_address", _address, repr),
    "ip": ("announced_ips", _addresses, repr),
    "ice_tcp_port": ("ice_tcp_port", _port, repr),
    "turn_url": ("turn_url", _turn_urls, repr),
    "turn_secret": ("turn_secret", _turn_secret, _secret),
    "turn_ttl": ("turn_ttl", _positive, repr),
    "vod_live_loop": ("vod_live_loop", _bool, repr),
    "transcoding_disabled": ("transcoding_disabled", _bool, repr),
    "hls_abr_profiles": ("hls_abr_profiles", Ladder.parse, repr),
    "webrtc_abr": ("webrtc_abr", _bool, repr),
    "vod_stream_timeout": ("vod_stream_timeout", _non_negative, repr),
    "hls_idle_timeout": ("hls_idle_timeout", _positive, repr),
    "vod_mp4_container_new": ("vod_mp4_container_new", _bool, repr),
    "aws_s3_credentials": ("aws_s3_credentials", _s3_credentials, _secret),
    "aws_s3_endpoint": ("aws_s3_endpoint", _url, repr),
    "aws_s3_request_timeout": ("aws_s3_request_timeout", _positive, repr),
    "tls_cert": ("tls_cert", _optional_path, repr),
    "tls_key": ("tls_key", _optional_path, repr),
    "state_dir": ("state_dir", _path, repr),
    "keep_alive.server_interval": ("ping_interval", _positive, repr),
    "keep_alive.probes": ("ping_probes", _positive, repr),
    "ws_max_message_size": ("ws_max_message_size", _positive, repr),
    "ws_send_buffer": ("ws_send_buffer", _positive, repr),
    "websdk_dir": ("websdk_dir", _optional_path, repr),
    "rest_api_key": ("rest_api_key", _token, _secret),
    "rest_hook_url": ("rest_hook_url", _hook_url, repr),
    "rest_hook_timeout": ("rest_hook_timeout", _positive, repr),
    "play_token_secret": ("play_token_secret", _secret_text, _secret),
    "rtmp_transponder_full_url": ("rtmp_transponder_full_url", _bool, repr),
    "rtmp_transponder_stream_name_prefix": (
        "rtmp_transponder_stream_name_prefix",
        _key_prefix,
        repr,
    ),
    "rtmp_push_retries": ("rtmp_push_retries", _non_negative, repr),
    "rtmp_push_ca_file": ("rtmp_push_ca_file", _optional_path, repr),
    "access_log": ("access_log", _bool, repr),
    "log_format": ("log_format", _log_format, repr),
    "stream_record_policy_template": ("record_template", _template, repr),
    "webrtc_sender": ("webrtc_sender", _sender, repr),
    "webrtc_udp_gso": ("webrtc_udp_gso", _bool, repr),
    "webrtc_own_srtp": ("webrtc_own_srtp", _bool, repr),
    "webrtc_audio_packet_ms": ("webrtc_audio_packet_ms", _audio_packet_ms, repr),
    "vod_audio_cache_size": ("vod_audio_cache_size", _non_negative, repr),
    "rest_cors_origins": ("rest_cors_origins", _origins, repr),
    "ws_allowed_origins": ("ws_allowed_origins", _origins, repr),
    "workers": ("workers", _workers, repr),
    "cluster_redis_url": ("cluster_redis_url", _redis_url, _secret),
    "cluster_address": ("cluster_address", _address, repr),
    "cluster_node": ("cluster_node", _node, repr),
    **{
        key: (f"limits.{key}", _non_negative if key == "record_min_free_disk" else _positive, repr)
        for key in limits.KEYS
    },
}


def parse_properties(text: str) -> Iterator[tuple[int, str, str]]:
    """Yield ``(line number, key, value)`` from Java properties text.

    Follows ``java.util.Properties.load``: ``#``/``!`` comments, ``=``, ``:``
    or white space between key and value, a trailing backslash continues the
    line, and ``\\t``, ``\\n``, ``\\uXXXX`` escapes.
    """
    lines = text.splitlines()
    index = 0
    while index < len(lines):
        number = index + 1
        logical = lines[index].lstrip()
        index += 1
        if not logical or logical[0] in "#!":
            continue
        while _continues(logical) and index < len(lines):
            logical = logical[:-1] + lines[index].lstrip()
            index += 1
        if _continues(logical):
            logical = logical[:-1]
        key, value = _split(logical)
        yield number, _unescape(key), _unescape(value)


def _continues(line: str) -> bool:
    """True when the line ends in an odd number of backslashes."""
    trailing = len(line) - len(line.rstrip("\\"))
    return trailing % 2 == 1


def _split(line: str) -> tuple[str, str]:
    position = 0
    while position < len(line):
        char = line[position]
        if char == "\\":
            position += 2
            continue
        if char in "=: \t\f":
            break
        position += 1
    key = line[:position]
    rest = line[position:].lstrip(" \t\f")
    if rest[:1] in ("=", ":"):
        rest = rest[1:].lstrip(" \t\f")
    return key, rest.rstrip()


_ESCAPES = {"t": "\t", "n": "\n", "r": "\r", "f": "\f"}


def _unescape(text: str) -> str:
    out: list[str] = []
    position = 0
    while position < len(text):
        char = text[position]
        if char != "\\" or position + 1 == len(text):
            out.append(char)
            position += 1
            continue
        escaped = text[position + 1]
        if escaped == "u" and len(text) >= position + 6:
            try:
                out.append(chr(int(text[position + 2 : position + 6], 16)))
                position += 6
                continue
            except ValueError:
                pass
        out.append(_ESCAPES.get(escaped, escaped))
        position += 2
    return "".join(out)


def load(path: Path | None = None, overrides: Mapping[str, str] | None = None) -> Settings:
    """Read the properties file (if any) and apply command-line overrides.

    Raises :class:`ConfigError` naming the key and the value for the first
    bad value; logs a warning once for each key it does not know.
    """
    raw: dict[str, tuple[str, str]] = {}
    source = path if path is not None else DEFAULT_CONFIG
    if path is not None or source.exists():
        try:
            text = source.read_text(encoding="utf-8")
        except OSError as error:
            raise ConfigError(f"config file {str(source)!r}: {error.strerror}") from None
        except UnicodeDecodeError:
            raise ConfigError(f"config file {str(source)!r}: not UTF-8 text") from None
        for number, key, value in parse_properties(text):
            raw[key] = (value, f"{source}:{number}")
    for key, value in (overrides or {}).items():
        raw[key] = (value, "command line")
    return settings_from(raw)


def settings_from(raw: Mapping[str, tuple[str, str]]) -> Settings:
    """Turn ``{key: (text, where)}`` into :class:`Settings`, checking each value.

    A key set more than once counts where it was set last (the mapping holds
    one entry a key), so an unknown key is warned about once, naming that place.
    """
    values: dict[str, Any] = {}
    for key, (text, where) in raw.items():
        known = _KEYS.get(key)
        if known is None:
            log.warn("{where}: unknown key {key!r} ignored", where=where, key=key)
            continue
        attribute, convert, show = known
        try:
            values[attribute] = convert(text.strip())
        except ValueError as error:
            raise ConfigError(f"{where}: {key}={show(text)}: {error}") from None
    caps = {
        attribute.removeprefix("limits."): values.pop(attribute)
        for attribute in list(values)
        if attribute.startswith("limits.")
    }
    settings = replace(Settings(), **values, limits=replace(Limits(), **caps))
    _check_together(settings)
    return settings


def _check_together(settings: Settings) -> None:
    """Checks that need more than one value, or the file system."""
    if not settings.media_dir.is_dir():
        raise ConfigError(f"media_dir={str(settings.media_dir)!r}: not a directory")
    if (settings.tls_cert is None) != (settings.tls_key is None):
        raise ConfigError("tls_cert and tls_key: set both or neither")
    for key in ("tls_cert", "tls_key", "websdk_dir", "rtmp_push_ca_file"):
        value = getattr(settings, key)
        if value is not None and not value.exists():
            raise ConfigError(f"{key}={str(value)!r}: no such file or directory")
    if settings.cluster_redis_url and not settings.relay_address:
        raise ConfigError(
            "cluster_address: set the address other nodes reach this one on "
            "(or ip, or a bind_address that is not 0.0.0.0)"
        )
    seen: dict[int, str] = {}
    if settings.turn_url and not settings.turn_secret:
        raise ConfigError(
            "turn_secret: set the TURN server's static-auth-secret (coturn's "
            "use-auth-secret), or leave turn_url out"
        )
    for key in (
        "ws.port",
        "wss.port",
        "http.port",
        "https.port",
        "hls.port",
        "hls.ssl.port",
        "ice_tcp_port",
    ):
        port = getattr(settings, _KEYS[key][0])
        if port and port in seen:
            raise ConfigError(f"{key}={port}: already used by {seen[port]}")
        seen[port] = key
