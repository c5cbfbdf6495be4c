"""TLS-ALPN-01 answers: which handshakes on a listener get the pending challenge certificate.

The CA's validation handshake (RFC 8737 3) names the certificate's DNS name
in SNI and offers ALPN ``acme-tls/1`` and nothing else. The worker reads
the ClientHello before the handshake (transport/tls.py) and asks
``TlsAlpnAnswers.context_for``: for such a hello, when the manager has put a
challenge for that name in the storage (storage.put_tls_alpn_challenge), a
context of its own serves that key and certificate with ALPN ``acme-tls/1``;
every other hello (None) goes to the listener's contexts as if this did not
exist. The file is read per validation handshake (only a CA makes them):
what the manager wrote last is what serves.
"""

import ssl

from fastgate.acme.settings import ManagedCertificate
from fastgate.acme.storage import tls_alpn_challenge_path
from fastgate.wire.tls_hello import ClientHello

ACME_TLS_ALPN = b"acme-tls/1"
"""The ALPN protocol of the validation handshake (RFC 8737 6.2)."""


class TlsAlpnAnswers:
    """The TLS-ALPN-01 answers of one listener's managed certificate. Immutable after load."""

    __slots__ = ("paths",)

    def __init__(self, managed: ManagedCertificate) -> None:
        self.paths = {name: tls_alpn_challenge_path(managed.storage, name) for name in managed.names}
        """Managed DNS name -> where its pending challenge is."""

    def context_for(self, hello: ClientHello) -> ssl.SSLContext | None:
        """The context that answers ``hello`` with a challenge certificate; None: not a validation
        handshake, or no challenge pending for its name."""
        if hello.alpn != (ACME_TLS_ALPN,) or hello.server_name is None:
            return None
        path = self.paths.get(hello.server_name)
        if path is None:
            return None
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2  # RFC 8737 4
        context.set_alpn_protocols([ACME_TLS_ALPN.decode()])
        try:
            context.load_cert_chain(path)
        except (OSError, ssl.SSLError):  # none pending (or being replaced): the listener's certificate serves
            return None
        return context
