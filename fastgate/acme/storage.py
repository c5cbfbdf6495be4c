"""The ACME storage directory: account keys, certificates, their status, pending challenges.

Layout (directories 0700, files 0600, every file replaced by an atomic rename):

    <storage>/accounts/<sha256 of the directory URL, 16 hex>/key.pem   the account's EC P-256 key
    <storage>/certificates/<name>/cert.pem                              the certificate and its chain
    <storage>/certificates/<name>/key.pem                               its private key
    <storage>/certificates/<name>/status.json                           orders, failures, next try
    <storage>/challenges/<token>                                        an HTTP-01 key authorization
    <storage>/challenges/tls-alpn-01.<name>.pem                         a TLS-ALPN-01 key and certificate

The manager process writes; workers read a challenge when the CA asks for
it (a TLS-ALPN-01 file's name has dots, which no token has: the HTTP-01
route never serves it), and the config loader reads the certificate and its key.
"""

import hashlib
import os
import re

import msgspec
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from fastgate.acme.settings import ManagedCertificate

TOKEN = re.compile(r"^[A-Za-z0-9_-]{1,256}$")
"""What an ACME challenge token looks like (base64url); anything else is never a file name."""


class Status(msgspec.Struct, kw_only=True):
    """A certificate's ordering record (status.json)."""

    issued: int = 0
    """Certificates obtained."""
    failures: int = 0
    """Orders that failed."""
    failed_in_a_row: int = 0
    """Failures since the last success (the back-off's exponent)."""
    retry_at: float = 0.0
    """Unix time before which no new order is made after a failure (0: none pending)."""
    last_error: str = ""
    """Why the last order failed."""


class StoredCertificate(msgspec.Struct, frozen=True):
    cert_path: str
    key_path: str
    not_before: float
    not_after: float
    """Validity of the leaf, Unix seconds."""


def write_private(path: str, data: bytes) -> None:
    """Write ``path`` (mode 0600, parents 0700) so that a reader sees the old file or the new one."""
    _private_folders(os.path.dirname(path))
    temporary = f"{path}.{os.getpid()}.tmp"
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(temporary, path)


def _private_folders(folder: str) -> None:
    """Make ``folder`` and its missing parents with mode 0700 (os.makedirs gives it to the last only)."""
    if os.path.isdir(folder):
        return
    _private_folders(os.path.dirname(folder))
    try:
        os.mkdir(folder, 0o700)
    except FileExistsError:
        pass


class CertificateStore:
    """The files of one managed certificate."""

    def __init__(self, managed: ManagedCertificate) -> None:
        self.managed = managed
        folder = os.path.join(managed.storage, "certificates", managed.name)
        self.cert_path = os.path.join(folder, "cert.pem")
        self.key_path = os.path.join(folder, "key.pem")
        self.status_path = os.path.join(folder, "status.json")

    def current(self) -> StoredCertificate | None:
        """The stored certificate, if there is one for all the names (a name added to the config
        makes it unusable: a new one is ordered)."""
        try:
            with open(self.cert_path, "rb") as f:
                leaf = x509.load_pem_x509_certificates(f.read())[0]
        except (OSError, ValueError):
            return None
        if not os.path.exists(self.key_path):
            return None
        try:
            san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        except x509.ExtensionNotFound:
            return None
        if not set(self.managed.names) <= {n.lower() for n in san.get_values_for_type(x509.DNSName)}:
            return None
        return StoredCertificate(self.cert_path, self.key_path, leaf.not_valid_before_utc.timestamp(),
                                 leaf.not_valid_after_utc.timestamp())

    def save(self, fullchain_pem: bytes, key_pem: bytes) -> None:
        """Keep a new certificate and its key. A reader between the two renames sees the new key with
        the old certificate, which the config loader refuses as not matching (tls/certificates.py):
        that reload is refused and the next one (the manager asks for it after both) succeeds."""
        write_private(self.key_path, key_pem)
        write_private(self.cert_path, fullchain_pem)

    def status(self) -> Status:
        try:
            with open(self.status_path, "rb") as f:
                return msgspec.json.decode(f.read(), type=Status)
        except (OSError, msgspec.DecodeError):
            return Status()

    def write_status(self, status: Status) -> None:
        write_private(self.status_path, msgspec.json.encode(status))


def account_key(managed: ManagedCertificate) -> ec.EllipticCurvePrivateKey:
    """The account key for the certificate's directory, made (and stored) on first use."""
    digest = hashlib.sha256(managed.directory.encode()).hexdigest()[:16]
    path = os.path.join(managed.storage, "accounts", digest, "key.pem")
    try:
        with open(path, "rb") as f:
            return serialization.load_pem_private_key(f.read(), password=None)
    except FileNotFoundError:
        pass
    key = ec.generate_private_key(ec.SECP256R1())
    write_private(path, key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
    return key


def challenges_dir(storage: str) -> str:
    return os.path.join(storage, "challenges")


def put_challenge(storage: str, token: str, key_authorization: str) -> str:
    """Publish an HTTP-01 answer for the workers; returns its path (to remove it after)."""
    path = os.path.join(challenges_dir(storage), token)
    write_private(path, key_authorization.encode())
    return path


def tls_alpn_challenge_path(storage: str, name: str) -> str:
    """Where the TLS-ALPN-01 answer for the DNS ``name`` (checked at load) is, while pending."""
    return os.path.join(challenges_dir(storage), f"tls-alpn-01.{name}.pem")


def put_tls_alpn_challenge(storage: str, name: str, key_and_certificate_pem: bytes) -> str:
    """Publish a TLS-ALPN-01 answer for the workers; returns its path (to remove it after)."""
    path = tls_alpn_challenge_path(storage, name)
    write_private(path, key_and_certificate_pem)
    return path
