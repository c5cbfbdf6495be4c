"""Why a client's TLS handshake failed, in a few bounded words (the reason label of
``fastgate_tls_handshake_failures_total``).

OpenSSL names hundreds of reasons; a metric label must stay bounded, and an
operator mostly asks: are clients too old (protocol_version,
no_shared_cipher), do they distrust the certificate (unknown_ca,
bad_certificate), is something speaking plain HTTP to the TLS port
(http_request), or are they slow or gone (timeout, closed)?
"""

import ssl

PROTOCOL_VERSION = "protocol_version"
"""The client offered only TLS versions below the listener's min_version (or refused ours)."""
NO_SHARED_CIPHER = "no_shared_cipher"
"""No cipher suite the client offered is allowed by the listener's ciphers."""
UNKNOWN_CA = "unknown_ca"
"""The client does not trust the CA that signed the certificate (its alert unknown_ca)."""
BAD_CERTIFICATE = "bad_certificate"
"""The client refused the certificate for another reason: its name, its dates, its kind."""
HTTP_REQUEST = "http_request"
"""Plain HTTP arrived at the TLS port."""
TIMEOUT = "timeout"
"""The handshake did not end within the listener's handshake_timeout."""
CLOSED = "closed"
"""The client closed or reset the connection during the handshake (a TCP probe, a client that
gave up, or one that rejected the certificate without an alert)."""
OTHER = "other"
"""Anything else: garbage, a malformed handshake."""

REASONS = (PROTOCOL_VERSION, NO_SHARED_CIPHER, UNKNOWN_CA, BAD_CERTIFICATE, HTTP_REQUEST, TIMEOUT, CLOSED, OTHER)
"""Every reason, in the order of the metric's series."""

_BY_OPENSSL_REASON = {
    "UNSUPPORTED_PROTOCOL": PROTOCOL_VERSION,
    "VERSION_TOO_LOW": PROTOCOL_VERSION,
    "WRONG_SSL_VERSION": PROTOCOL_VERSION,
    "TLSV1_ALERT_PROTOCOL_VERSION": PROTOCOL_VERSION,
    "NO_SHARED_CIPHER": NO_SHARED_CIPHER,
    "NO_CIPHERS_AVAILABLE": NO_SHARED_CIPHER,
    "NO_SHARED_GROUPS": NO_SHARED_CIPHER,
    "NO_SUITABLE_SIGNATURE_ALGORITHM": NO_SHARED_CIPHER,
    "TLSV1_ALERT_INSUFFICIENT_SECURITY": NO_SHARED_CIPHER,
    "TLSV1_ALERT_UNKNOWN_CA": UNKNOWN_CA,
    "SSLV3_ALERT_BAD_CERTIFICATE": BAD_CERTIFICATE,
    "SSLV3_ALERT_CERTIFICATE_UNKNOWN": BAD_CERTIFICATE,
    "SSLV3_ALERT_CERTIFICATE_EXPIRED": BAD_CERTIFICATE,
    "SSLV3_ALERT_CERTIFICATE_REVOKED": BAD_CERTIFICATE,
    "SSLV3_ALERT_UNSUPPORTED_CERTIFICATE": BAD_CERTIFICATE,
    "TLSV1_ALERT_ACCESS_DENIED": BAD_CERTIFICATE,
    "HTTP_REQUEST": HTTP_REQUEST,
    "HTTPS_PROXY_REQUEST": HTTP_REQUEST,
}


def failure_reason(exc: BaseException | None) -> str:
    """The reason word for the exception a server-side handshake ended with (None: the
    connection was lost without one)."""
    if isinstance(exc, ssl.SSLError):
        if isinstance(exc, (ssl.SSLEOFError, ssl.SSLZeroReturnError)):
            return CLOSED
        return _BY_OPENSSL_REASON.get(exc.reason or "", OTHER)
    if isinstance(exc, ConnectionAbortedError):  # how uvloop ends a handshake past its timeout
        return TIMEOUT
    if exc is None or isinstance(exc, (ConnectionResetError, BrokenPipeError, EOFError)):
        return CLOSED
    return OTHER
