"""A TLS listener's server side: one SSLContext per certificate, picked by the client's SNI.

Theory of operation
-------------------
Every certificate of a listener gets a context of its own with the same
settings (minimum version, ciphers, ALPN). The first certificate's context
is the listener's: every handshake starts on it, and its SNI callback looks
the client's server name up and, when another certificate serves that name,
switches the connection to that certificate's context. The lookup takes an
exact name first, then a wildcard covering the name ("*.example.com" covers
"a.example.com", neither "a.b.example.com" nor "example.com"); among
certificates with the same name the first listed wins. A client without
SNI, or asking for a name no certificate has, gets the first certificate
(nginx's default server certificate).

The contexts are made in the master before it forks, so all workers of a
generation share them, and with them the session ticket keys: OpenSSL seals
tickets with the keys of the context a handshake started on (the first), so
a ticket one worker issued resumes the session on any other. A reload makes
new contexts, and new keys: sessions from before it do one full handshake.
"""

import ssl

from fastgate.tls.certificates import CertificateFileError, CertificateInfo, TlsSettingError, read_certificate

ALPN_PROTOCOLS = ("h2", "http/1.1")
"""The protocols a TLS listener offers in ALPN, most preferred first; the listener serves the one
the handshake chose (ssl_object.selected_alpn_protocol(), transport/listeners.py)."""
ALPN_HTTP1_ONLY = ("http/1.1",)
"""What a listener with ``http2 = false`` offers."""

VERSIONS = {"1.2": ssl.TLSVersion.TLSv1_2, "1.3": ssl.TLSVersion.TLSv1_3}
"""The config's min_version words."""


class ServerTls:
    """A TLS listener's contexts and handshake settings. Built in the master; immutable after."""

    __slots__ = ("context", "contexts", "certificates", "handshake_timeout_s", "http2", "_exact", "_wildcard")

    def __init__(self, certificates: list[tuple[str, str]], min_version: str = "1.2", ciphers: str = "",
                 handshake_timeout_s: float = 10.0, http2: bool = True) -> None:
        """``certificates``: (cert file, key file) pairs, the default first; ``http2``: ALPN offers h2.
        Raise TlsSettingError
        naming the field ("certificates[1].key", "ciphers")."""
        if not certificates:
            raise TlsSettingError("certificates", "at least one certificate is needed")
        infos: list[CertificateInfo] = []
        for i, (cert, key) in enumerate(certificates):
            try:
                infos.append(read_certificate(cert, key))
            except CertificateFileError as exc:
                raise TlsSettingError(f"certificates[{i}].{exc.which}", exc.reason) from None
        self.certificates = tuple(infos)
        self.handshake_timeout_s = handshake_timeout_s
        self.http2 = http2
        """ALPN offers h2 (then the connection's protocol is the one the handshake chose)."""
        alpn = ALPN_PROTOCOLS if http2 else ALPN_HTTP1_ONLY
        self.contexts = tuple(_context(info, i, min_version, ciphers, alpn) for i, info in enumerate(infos))
        """One per certificate, in the config's order."""
        self.context = self.contexts[0]
        """The listener's context: handshakes start on it (and its ticket keys seal every session)."""
        self._exact: dict[str, ssl.SSLContext] = {}
        self._wildcard: dict[str, ssl.SSLContext] = {}
        """".example.com" -> the context of the first certificate named "*.example.com"."""
        for info, context in zip(infos, self.contexts):
            for name in info.names:
                if name.startswith("*."):
                    self._wildcard.setdefault(name[1:], context)
                else:
                    self._exact.setdefault(name, context)
        if len(self.contexts) > 1:
            self.context.sni_callback = self._on_server_name

    def context_for(self, server_name: str) -> ssl.SSLContext:
        """The context whose certificate serves ``server_name`` (the first certificate's when none does)."""
        name = server_name.lower().rstrip(".")
        context = self._exact.get(name)
        if context is not None:
            return context
        dot = name.find(".")
        if dot > 0:
            context = self._wildcard.get(name[dot:])
            if context is not None:
                return context
        return self.context

    def _on_server_name(self, ssl_object, server_name: str | None, context: ssl.SSLContext) -> None:
        """OpenSSL's servername callback, once per ClientHello: switch to the named certificate."""
        if server_name:
            chosen = self.context_for(server_name)
            if chosen is not context:
                ssl_object.context = chosen


def _context(info: CertificateInfo, index: int, min_version: str, ciphers: str,
             alpn: tuple[str, ...] = ALPN_PROTOCOLS) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = VERSIONS[min_version]
    context.options |= ssl.OP_NO_RENEGOTIATION  # a client-initiated renegotiation costs the server a handshake
    if ciphers:
        try:
            context.set_ciphers(ciphers)
        except ssl.SSLError:
            raise TlsSettingError("ciphers", f"OpenSSL knows no cipher in {ciphers!r}") from None
    context.set_alpn_protocols(alpn)
    try:
        context.load_cert_chain(info.cert_path, info.key_path, password=_no_passphrase)
    except (ssl.SSLError, OSError, ValueError) as exc:
        raise TlsSettingError(f"certificates[{index}].cert",
                              f"OpenSSL cannot use {info.cert_path} with {info.key_path}: {exc}") from None
    return context


def _no_passphrase() -> bytes:
    """Asked for an encrypted key's passphrase: there is none (and never a prompt on the terminal)."""
    raise ValueError("the key is encrypted; give it without a passphrase")
