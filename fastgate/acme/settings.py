"""A certificate the gateway obtains from an ACME directory, as compiled from a listener's ``tls.acme``."""

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ManagedCertificate:
    """One certificate to keep issued. Equal settings make equal objects (a reload that keeps them
    leaves the running manager alone)."""

    names: tuple[str, ...]
    """DNS names, lower case; the first names the certificate (its directory in the storage)."""
    directory: str
    """The ACME directory URL."""
    email: str
    """The account's contact address, or ""."""
    storage: str
    """Absolute path of the storage directory."""
    renew_before_s: float
    """Renew when less than this is left of the certificate's life."""
    retry_backoff_s: float
    """Wait after the first failed order; doubled per further failure up to MAX_BACKOFF_S."""
    directory_ca_file: str
    """CA bundle for the directory's HTTPS; "" for the system's."""
    challenge: str = "http-01"
    """How the CA validates the names: HTTP01 or TLS_ALPN01."""

    @property
    def name(self) -> str:
        """The certificate's name in logs, metrics and the storage: its first DNS name."""
        return self.names[0]


HTTP01 = "http-01"
"""Answered on a plain listener (acme/challenge.py)."""
TLS_ALPN01 = "tls-alpn-01"
"""Answered in the TLS handshake on the certificate's own listener (acme/tls_alpn_answers.py)."""
MAX_BACKOFF_S = 86400.0
"""Longest wait between two failed orders of one certificate."""
