"""The HTTP/1.1 WebSocket opening handshake's key and accept (RFC 6455 4.2.2), sans-IO.

An HTTP/2 client opens a WebSocket with an extended CONNECT (RFC 8441), which
has no Sec-WebSocket-Key: the gateway makes one for the HTTP/1.1 upgrade it
sends upstream, and checks the upstream's Sec-WebSocket-Accept against it
before it tells the client that the WebSocket is open.
"""

import base64
import hashlib
import os

_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
"""The constant RFC 6455 appends to the key before hashing it."""


def new_key() -> bytes:
    """A fresh Sec-WebSocket-Key: 16 random bytes, base64."""
    return base64.b64encode(os.urandom(16))


def accept_of(key: bytes) -> bytes:
    """The Sec-WebSocket-Accept a server must answer ``key`` with."""
    return base64.b64encode(hashlib.sha1(key + _GUID).digest())
