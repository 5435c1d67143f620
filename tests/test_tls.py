"""TLS material: the listeners' PEM pair and the CAs rtmps:// pushes trust."""

from __future__ import annotations

import datetime
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from OpenSSL import crypto
from twisted.internet import ssl

from wcs.config import ConfigError
from wcs.tls import push_trust, self_signed


def authority(path: Path, name: str) -> Path:
    """A self-signed CA certificate named ``name``, as PEM at ``path``."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path


def test_a_ca_file_of_several_certificates_trusts_each_and_only_them(tmp_path):
    first, _ = self_signed(tmp_path / "a")  # what the server makes for itself
    second = authority(tmp_path / "b.pem", "a private CA")
    stranger = authority(tmp_path / "c.pem", "someone else")
    bundle = tmp_path / "bundle.pem"
    bundle.write_bytes(first.read_bytes() + second.read_bytes())
    context = ssl.CertificateOptions(trustRoot=push_trust(bundle)).getContext()
    store = context.get_cert_store()  # (the context owns it: keep both)

    def verifies(pem) -> bool:
        cert = crypto.load_certificate(crypto.FILETYPE_PEM, pem.read_bytes())
        try:
            crypto.X509StoreContext(store, cert).verify_certificate()
        except crypto.X509StoreContextError:
            return False
        return True

    assert verifies(first) and verifies(second) and not verifies(stranger)


@pytest.mark.parametrize("content", [b"", b"not a certificate", b"-----BEGIN CERTIFICATE-----\nx"])
def test_a_ca_file_without_certificates_stops_the_start_naming_the_key(tmp_path, content):
    path = tmp_path / "ca.pem"
    path.write_bytes(content)
    with pytest.raises(ConfigError, match=r"^rtmp_push_ca_file='.*ca\.pem': cannot load PEM"):
        push_trust(path)
