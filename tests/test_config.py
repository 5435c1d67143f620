"""The properties parser and every bad-value case of the settings."""

from __future__ import annotations

from pathlib import Path

import pytest
from twisted.logger import globalLogPublisher

from wcs import config
from wcs.config import ConfigError, Settings, parse_properties


def parsed(text: str) -> dict[str, str]:
    return {key: value for _line, key, value in parse_properties(text)}


def test_java_properties_syntax():
    text = (
        "# comment\n"
        "! another comment\n"
        "\n"
        "   indented = value with spaces  \n"
        "colon:value\n"
        "space separated\n"
        "empty=\n"
        "continued = first, \\\n"
        "            second\n"
        "escaped\\=key = a\\tb\\u0041\n"
        "trailing\\\\ = backslash\n"
    )
    assert parsed(text) == {
        "indented": "value with spaces",
        "colon": "value",
        "space": "separated",
        "empty": "",
        "continued": "first, second",
        "escaped=key": "a\tbA",
        "trailing\\": "backslash",
    }


def test_line_numbers_point_at_the_key():
    lines = [line for line, _k, _v in parse_properties("# x\n\na=1\nb=2 \\\n 3\nc=4\n")]
    assert lines == [3, 4, 6]


def load_text(tmp_path: Path, text: str) -> Settings:
    path = tmp_path / "test.properties"
    path.write_text(f"media_dir={tmp_path}\n{text}")
    return config.load(path)


def test_defaults(tmp_path):
    settings = load_text(tmp_path, "")
    assert (settings.ws_port, settings.wss_port, settings.http_port, settings.https_port) == (
        8080, 8443, 8081, 8444)
    assert settings.vod_live_loop is False
    assert settings.vod_stream_timeout == 30000
    assert settings.vod_mp4_container_new is True
    assert settings.aws_s3_credentials is None
    assert settings.announced_ips == ()
    assert settings.media_dir == tmp_path
    assert str(settings.hls_abr_profiles) == "360p,180p" and settings.webrtc_abr is True


def test_the_quality_ladder(tmp_path):
    settings = load_text(tmp_path, "hls_abr_profiles=720p, 240p\nwebrtc_abr=false\n")
    assert str(settings.hls_abr_profiles) == "720p,240p" and settings.webrtc_abr is False
    assert not load_text(tmp_path, "hls_abr_profiles=\n").hls_abr_profiles


def test_limits_and_origins(tmp_path):
    settings = load_text(tmp_path, (
        "max_sessions=10\nmax_broadcasts=3\nrecord_min_free_disk=0\n"
        "rest_cors_origins=https://App.example:8443/, *\nws_allowed_origins=http://a.b\n"))
    assert settings.limits.max_sessions == 10 and settings.limits.max_broadcasts == 3
    assert settings.limits.record_min_free_disk == 0
    assert settings.limits.max_plays_per_session == Settings().limits.max_plays_per_session
    assert settings.rest_cors_origins == ("https://app.example:8443", "*")
    assert settings.ws_allowed_origins == ("http://a.b",)
    assert Settings().rest_cors_origins == () and Settings().ws_allowed_origins == ()


def test_the_shipped_file_loads():
    settings = config.load(config.DEFAULT_CONFIG)
    assert settings.media_dir == config.REPO_ROOT / "media"
    assert settings.ws_port == 8080


def test_good_values(tmp_path):
    settings = load_text(tmp_path, (
        "ws.port=9000\nwss.port=0\nip=127.0.0.1, ::1\nvod_live_loop=TRUE\n"
        "vod_stream_timeout=0\naws_s3_credentials=eu-west-1;AKIA;s3cr3t\n"
        "aws_s3_endpoint=http://127.0.0.1:9000/\n"))
    assert settings.ws_port == 9000 and settings.wss_port == 0
    assert settings.announced_ips == ("127.0.0.1", "::1")
    assert settings.vod_live_loop is True
    assert settings.vod_stream_timeout == 0
    assert settings.aws_s3_credentials == config.S3Credentials("eu-west-1", "AKIA", "s3cr3t")
    assert "s3cr3t" not in repr(settings)
    assert settings.aws_s3_endpoint == "http://127.0.0.1:9000"


@pytest.mark.parametrize("line, message", [
    ("ws.port=abc", "ws.port='abc': must be a port number"),
    ("http.port=70000", "http.port='70000': must be a port number"),
    ("https.port=-1", "https.port='-1': must be a port number"),
    ("wss.port=", "wss.port='': must be a port number"),
    ("vod_stream_timeout=-1", "vod_stream_timeout='-1': must not be negative"),
    ("vod_stream_timeout=soon", "vod_stream_timeout='soon': must be a whole number"),
    ("vod_live_loop=yes", "vod_live_loop='yes': must be true or false"),
    ("vod_mp4_container_new=1", "vod_mp4_container_new='1': must be true or false"),
    ("aws_s3_credentials=zone;login", "aws_s3_credentials=<hidden>: must be three"),
    ("aws_s3_credentials=a;b;c;d", "aws_s3_credentials=<hidden>: must be three"),
    ("aws_s3_credentials=a;;c", "aws_s3_credentials=<hidden>: must be three"),
    ("aws_s3_endpoint=ftp://x", "aws_s3_endpoint='ftp://x': must be an http"),
    ("ip=my.host", "ip='my.host': must be an IP address"),
    ("bind_address=300.1.1.1", "bind_address='300.1.1.1': must be an IP address"),
    ("keep_alive.server_interval=0", "keep_alive.server_interval='0': must be greater"),
    ("ws_max_message_size=big", "ws_max_message_size='big': must be a whole number"),
    ("media_dir=/no/such/folder", "media_dir='/no/such/folder': not a directory"),
    ("tls_cert=/etc/hostname", "tls_cert and tls_key: set both or neither"),
    ("tls_cert=/no/cert\ntls_key=/no/key", "tls_cert='/no/cert': no such file"),
    ("websdk_dir=/no/sdk", "websdk_dir='/no/sdk': no such file"),
    ("rtmp_push_ca_file=/no/ca.pem", "rtmp_push_ca_file='/no/ca.pem': no such file"),
    ("ws.port=9000\nhttp.port=9000", "http.port=9000: already used by ws.port"),
    ("max_sessions=0", "max_sessions='0': must be greater than zero"),
    ("max_plays_per_session=many", "max_plays_per_session='many': must be a whole number"),
    ("record_min_free_disk=-5", "record_min_free_disk='-5': must not be negative"),
    ("rest_cors_origins=evil.example", "rest_cors_origins='evil.example': 'evil.example' is"),
    ("ws_allowed_origins=https://a/b", "ws_allowed_origins='https://a/b': 'https://a/b' is"),
    ("workers=0", "workers='0': must be auto or a number from 1 to 256"),
    ("workers=lots", "workers='lots': must be auto or a number"),
    ("cluster_redis_url=http://x", "cluster_redis_url=<hidden>: must be a redis://"),
    ("cluster_redis_url=redis://h:6379/0", "cluster_address: set the address other nodes"),
    ("cluster_address=host.name", "cluster_address='host.name': must be an IP address"),
    ("hls_abr_profiles=360", "hls_abr_profiles='360': '360' is not a rung"),
    ("webrtc_abr=on", "webrtc_abr='on': must be true or false"),
    ("webrtc_audio_packet_ms=30", "webrtc_audio_packet_ms='30': must be 20, 40, 60, 80, 100"),
    ("webrtc_audio_packet_ms=140", "webrtc_audio_packet_ms='140': must be 20, 40"),
    ("webrtc_audio_packet_ms=x", "webrtc_audio_packet_ms='x': must be 20, 40"),
    ("cluster_node=a b", "cluster_node='a b': must be at most 64 letters"),
])
def test_bad_values_name_key_and_value(tmp_path, line, message):
    with pytest.raises(ConfigError) as raised:
        load_text(tmp_path, line + "\n")
    text = str(raised.value)
    assert message in text
    assert "\n" not in text


def test_the_audio_packet_length(tmp_path):
    assert load_text(tmp_path, "").webrtc_audio_packet_ms == 20
    assert load_text(tmp_path, "webrtc_audio_packet_ms=60\n").webrtc_audio_packet_ms == 60


def test_workers_and_cluster(tmp_path):
    settings = load_text(tmp_path, "workers=auto\n")
    assert settings.workers == 0 and settings.worker_count >= 1
    assert settings.relay_address == "127.0.0.1" and not settings.cluster_redis_url
    settings = load_text(tmp_path, "workers=3\ncluster_redis_url=redis://:pw@10.0.0.5:6379/1\n"
                                   "ip=10.0.0.11\ncluster_node=edge-1\n")
    assert settings.worker_count == 3 and settings.relay_address == "10.0.0.11"
    assert settings.node == "edge-1" and "pw" not in repr(settings)
    settings = load_text(tmp_path, "cluster_redis_url=redis://h/0\nbind_address=10.0.0.12\n")
    assert settings.relay_address == "10.0.0.12" and settings.node


def test_secret_never_shown(tmp_path):
    with pytest.raises(ConfigError) as raised:
        load_text(tmp_path, "aws_s3_credentials=zone;topsecret\n")
    assert "topsecret" not in str(raised.value)


def test_error_names_file_and_line(tmp_path):
    with pytest.raises(ConfigError) as raised:
        load_text(tmp_path, "# x\nws.port=x\n")
    assert str(raised.value).startswith(f"{tmp_path / 'test.properties'}:3: ")


def test_missing_config_file_is_an_error(tmp_path):
    with pytest.raises(ConfigError, match="No such file"):
        config.load(tmp_path / "absent.properties")


def test_unknown_key_warned_once_where_it_was_last_set(tmp_path):
    seen: list[dict] = []
    globalLogPublisher.addObserver(seen.append)
    try:
        path = tmp_path / "test.properties"
        path.write_text(f"media_dir={tmp_path}\nmystery=1\nmystery=2\nother=3\nthird=4\n")
        config.load(path, {"third": "5"})
    finally:
        globalLogPublisher.removeObserver(seen.append)
    warned = [(event["key"], event["where"]) for event in seen
              if event.get("log_namespace") == "wcs.config"]
    assert warned == [("mystery", f"{path}:3"), ("other", f"{path}:4"),
                      ("third", "command line")]


def test_command_line_overrides_file(tmp_path):
    path = tmp_path / "x.properties"
    path.write_text(f"media_dir={tmp_path}\nws.port=9000\n")
    assert config.load(path, {"ws.port": "9100"}).ws_port == 9100
    with pytest.raises(ConfigError, match="^command line: ws.port='x'"):
        config.load(path, {"ws.port": "x"})
