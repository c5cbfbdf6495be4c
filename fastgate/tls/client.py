"""An upstream's TLS client side: the context its connections (and health checks) use, and the
server name they send (SNI) and verify the certificate against."""

import ssl

from fastgate.tls.certificates import CertificateFileError, TlsSettingError, read_certificate

ALPN_H1 = ("http/1.1",)
"""What an HTTP/1.1 upstream's connections offer (upstream/connection.py)."""
ALPN_H2 = ("h2",)
"""What an HTTP/2 upstream's connections offer (upstream/h2_connection.py): the server must pick it."""


class UpstreamTls:
    """An upstream's client context and server name. Built in the master; immutable after."""

    __slots__ = ("context", "server_name", "verify")

    def __init__(self, verify: bool = True, ca_file: str = "", server_name: str = "", client_cert: str = "",
                 client_key: str = "", alpn: tuple[str, ...] = ALPN_H1) -> None:
        """Raise TlsSettingError naming the upstream's field ("tls_ca_file", "tls_client_key", ...)."""
        self.verify = verify
        self.server_name = server_name
        """The name sent in SNI and checked against the certificate; "" sends each server's own host
        (an IP address is sent no SNI and is checked against the certificate's IP addresses)."""
        if ca_file:
            try:
                context = ssl.create_default_context(cafile=ca_file)
            except FileNotFoundError as exc:
                raise TlsSettingError("tls_ca_file", f"cannot read {ca_file}: {exc.strerror}") from None
            except (ssl.SSLError, OSError) as exc:
                raise TlsSettingError("tls_ca_file", f"{ca_file} holds no usable PEM certificate: {exc}") from None
        else:
            context = ssl.create_default_context()  # the system's trust store
        if not verify:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        if client_cert or client_key:
            if not (client_cert and client_key):
                raise TlsSettingError("tls_client_key" if client_cert else "tls_client_cert",
                                      "a client certificate needs both tls_client_cert and tls_client_key")
            try:
                read_certificate(client_cert, client_key)
            except CertificateFileError as exc:
                raise TlsSettingError(f"tls_client_{exc.which}", exc.reason) from None
            try:
                context.load_cert_chain(client_cert, client_key, password=_no_passphrase)
            except (ssl.SSLError, OSError, ValueError) as exc:
                raise TlsSettingError("tls_client_cert", f"OpenSSL cannot use {client_cert} with {client_key}: "
                                                         f"{exc}") from None
        context.set_alpn_protocols(alpn)
        self.context = context

    def server_hostname(self, host: str) -> str:
        """What to pass as ``server_hostname`` when connecting to a server whose address host is ``host``."""
        return self.server_name or host


def _no_passphrase() -> bytes:
    raise ValueError("the key is encrypted; give it without a passphrase")
