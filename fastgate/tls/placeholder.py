"""A self-signed placeholder certificate: what an ACME listener serves before its first certificate.

A TLS listener cannot start without a certificate, and an ACME one has none
until the CA issued it (which needs the gateway running, to answer HTTP-01).
Until then it serves a self-signed certificate for its names, valid for a
day, made at load (an EC P-256 key: a millisecond). Clients do not trust it,
as with Traefik's default certificate; the ACME manager's reload replaces it.
The files exist only while the context is made.
"""

import datetime
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

PLACEHOLDER_ISSUER = "fastgate placeholder (ACME certificate pending)"
"""The common name the placeholder is issued by and to."""


@contextmanager
def placeholder_files(names: tuple[str, ...]) -> Iterator[tuple[str, str]]:
    """(certificate file, key file) of a new self-signed certificate for ``names``; removed on exit."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, PLACEHOLDER_ISSUER)])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=False)
            .sign(key, hashes.SHA256()))
    with tempfile.TemporaryDirectory(prefix="fastgate-placeholder-") as folder:
        cert_path, key_path = os.path.join(folder, "cert.pem"), os.path.join(folder, "key.pem")
        with open(cert_path, "wb") as f:
            f.write(cert.public_bytes(serialization.Encoding.PEM))
        with open(os.open(key_path, os.O_WRONLY | os.O_CREAT, 0o600), "wb") as f:
            f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption()))
        yield cert_path, key_path
