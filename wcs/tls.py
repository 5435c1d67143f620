"""TLS for wss and https: the configured PEM pair, or a self-signed one made once."""

from __future__ import annotations

import datetime
import ipaddress
import os
import socket
from pathlib import Path
from typing import TYPE_CHECKING

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from twisted.internet import ssl
from twisted.logger import Logger

from wcs.config import ConfigError, Settings

if TYPE_CHECKING:  # Twisted names it only in a private module
    from twisted.internet._sslverify import IOpenSSLTrustRoot

log = Logger()


def certificate_files(settings: Settings) -> tuple[Path, Path]:
    """The configured PEM pair, or a self-signed one made once; checked to load,
    so that a bad pair stops the start with both keys named."""
    if settings.tls_cert is not None and settings.tls_key is not None:
        cert_path, key_path = settings.tls_cert, settings.tls_key
    else:
        cert_path, key_path = self_signed(settings.state_dir / "tls")
    try:
        ssl.PrivateCertificate.loadPEM(cert_path.read_text() + key_path.read_text())
    except Exception as error:  # OpenSSL, PEM and I/O errors alike
        raise ConfigError(
            f"tls_cert={str(cert_path)!r}, tls_key={str(key_path)!r}: "
            f"cannot load the PEM pair ({error})"
        ) from None
    return cert_path, key_path


def push_trust(path: Path) -> IOpenSSLTrustRoot:
    """The CAs an ``rtmps://`` push trusts instead of the system's: the
    certificates in ``rtmp_push_ca_file`` (a private server's own, or its CA's)."""
    try:
        found = x509.load_pem_x509_certificates(path.read_bytes())
    except Exception as error:  # I/O and PEM errors alike
        raise ConfigError(
            f"rtmp_push_ca_file={str(path)!r}: cannot load PEM certificates ({error})"
        ) from None
    return ssl.trustRootFromCertificates(
        [ssl.Certificate.loadPEM(cert.public_bytes(serialization.Encoding.PEM)) for cert in found]
    )


def self_signed(folder: Path) -> tuple[Path, Path]:
    """Return the self-signed pair in ``folder``, creating it on first use."""
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    if cert_path.exists() and key_path.exists():
        log.info("TLS: self-signed certificate {path}", path=str(cert_path))
        return cert_path, key_path
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ConfigError(f"state_dir: cannot create {str(folder)!r} ({error.strerror})") from None
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "wcsvod self-signed")])
    now = datetime.datetime.now(datetime.UTC)
    alt_names: list[x509.GeneralName] = [
        x509.DNSName("localhost"),
        x509.DNSName(socket.gethostname()),
    ]
    alt_names.append(x509.IPAddress(ipaddress.ip_address("127.0.0.1")))
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=3650))
        .add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
        .sign(key, hashes.SHA256())
    )
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    log.info("TLS: made a self-signed certificate at {path}", path=str(cert_path))
    return cert_path, key_path
