"""Certificate and key files: read, checked, and the host names a certificate serves.

A problem is raised as ``CertificateFileError`` naming which of the two files
it is about ("cert" or "key"), so that the config loader can name the field
(``listeners[0].tls.certificates[1].key: cannot read /etc/x.key: No such file
or directory``). The files are read with the ``cryptography`` package (a
dependency of aioquic), which tells a missing file, a file without a PEM
certificate, an encrypted key and a key of another certificate apart, where
OpenSSL would say "PEM lib" for all of them.
"""

import ipaddress
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID

CERT, KEY = "cert", "key"


class TlsSettingError(Exception):
    """A TLS setting that cannot be used: ``field`` is its path relative to its table
    ("certificates[1].key", "ciphers", "tls_ca_file"), ``reason`` says why."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


class CertificateFileError(Exception):
    """A certificate (``which`` = "cert") or key ("key") file that cannot be used."""

    def __init__(self, which: str, reason: str) -> None:
        super().__init__(f"{which}: {reason}")
        self.which = which
        self.reason = reason


@dataclass(frozen=True, slots=True)
class CertificateInfo:
    """What the files hold, once checked."""

    cert_path: str
    key_path: str
    names: tuple[str, ...]
    """DNS names the certificate is valid for, lower case: its subjectAltName DNS entries (a
    "*.example.com" wildcard kept as it is), or, without any, its subject's common name."""
    not_after_s: float = 0.0
    """When the certificate expires (its notAfter), in Unix seconds."""


def read_certificate(cert_path: str, key_path: str) -> CertificateInfo:
    """Check that ``cert_path`` holds a PEM certificate (then its chain) and ``key_path`` its
    unencrypted private key; raise CertificateFileError."""
    cert_pem = _read(cert_path, CERT)
    try:
        chain = x509.load_pem_x509_certificates(cert_pem)
    except ValueError:
        raise CertificateFileError(CERT, f"{cert_path} holds no PEM certificate") from None
    leaf = chain[0]
    key_pem = _read(key_path, KEY)
    try:
        key = serialization.load_pem_private_key(key_pem, password=None)
    except TypeError:
        raise CertificateFileError(KEY, f"{key_path} is encrypted; give the key without a passphrase") from None
    except ValueError:
        raise CertificateFileError(KEY, f"{key_path} holds no PEM private key") from None
    except UnsupportedAlgorithm as exc:
        raise CertificateFileError(KEY, f"{key_path}: unsupported key type ({_first_line(exc)})") from None
    if _public(key.public_key()) != _public(leaf.public_key()):
        raise CertificateFileError(KEY, f"{key_path} is not the key of the certificate in {cert_path}")
    return CertificateInfo(cert_path, key_path, certificate_names(leaf), leaf.not_valid_after_utc.timestamp())


def certificate_names(cert: x509.Certificate) -> tuple[str, ...]:
    """The DNS names of ``cert`` (SAN, else CN), lower case, in order, without repeats."""
    names: list[str] = []
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        names = san.get_values_for_type(x509.DNSName)
    except x509.ExtensionNotFound:
        for attribute in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME):
            value = str(attribute.value)
            if not _is_ip(value):
                names.append(value)
    return tuple(dict.fromkeys(n.lower().rstrip(".") for n in names if n))


def _read(path: str, which: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as exc:
        raise CertificateFileError(which, f"cannot read {path}: {exc.strerror}") from None


def _public(key) -> bytes:
    return key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _first_line(exc: Exception) -> str:
    return (str(exc) or type(exc).__name__).splitlines()[0]
