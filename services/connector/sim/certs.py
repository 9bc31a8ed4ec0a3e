"""The simulator's self-signed TLS certificate, made with `cryptography`: kept in a file (the key beside it, 0600)
that the connector is configured to trust, so the connection is verified as a real server's is; or throw-away."""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import ssl
import tempfile

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from common import durable


def self_signed_pem(hostname: str = "localhost", days: int = 30) -> tuple[bytes, bytes]:
    """(certificate PEM, private key PEM) for `hostname` and 127.0.0.1, valid for `days`."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostname)])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName(hostname), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


def server_context(cert_pem: bytes, key_pem: bytes) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    with tempfile.TemporaryDirectory() as tmp:
        cert_path, key_path = os.path.join(tmp, "cert.pem"), os.path.join(tmp, "key.pem")
        with open(cert_path, "wb") as f:
            f.write(cert_pem)
        with open(key_path, "wb") as f:
            f.write(key_pem)
        ctx.load_cert_chain(cert_path, key_path)
    return ctx


def key_path_of(cert_path: str) -> str:
    root, _ = os.path.splitext(cert_path)
    return root + ".key"


def load_or_make(cert_path: str | None, min_days_left: int = 7) -> tuple[bytes, bytes]:
    """The certificate and key kept at `cert_path` (and its `.key`), made there when missing or about to expire;
    a throw-away pair without a path."""
    if cert_path is None:
        return self_signed_pem()
    key_path = key_path_of(cert_path)
    try:
        with open(cert_path, "rb") as f:
            cert_pem = f.read()
        with open(key_path, "rb") as f:
            key_pem = f.read()
        left = x509.load_pem_x509_certificate(cert_pem).not_valid_after_utc - dt.datetime.now(dt.UTC)
        if left > dt.timedelta(days=min_days_left):
            return cert_pem, key_pem
    except (OSError, ValueError):
        pass  # none yet, or unreadable: a new one
    cert_pem, key_pem = self_signed_pem(days=365)
    os.makedirs(os.path.dirname(os.path.abspath(cert_path)), exist_ok=True)
    durable.write_atomic(key_path, key_pem, mode=0o600)
    durable.write_atomic(cert_path, cert_pem)
    return cert_pem, key_pem
