"""GOAWAY frames taken out of an HTTP/2 server's byte stream before the h2 library reads it, sans-IO.

A GOAWAY says the server processes no stream above its last stream id; the
streams up to it may still finish (RFC 9113 6.8). The h2 library closes its
whole connection state on receiving one and then refuses every further frame
(python-hyper/h2 issue 1181), which would cut the very streams the GOAWAY
lets finish. So the client side walks the frame headers of what it receives
(9 bytes per frame, payloads skipped by arithmetic), cuts out each GOAWAY
and reports it; h2 sees every other frame unchanged. A frame header split
between two reads is held back until it is complete.
"""

_HEADER = 9
_GOAWAY = 7
_GOAWAY_MIN = 8
"""A GOAWAY payload: last stream id (4 bytes), error code (4 bytes), then debug data."""


class GoawayFilter:
    __slots__ = ("_left", "_header", "_goaway")

    def __init__(self) -> None:
        self._left = 0
        """Payload bytes of the current frame still to come."""
        self._header = b""
        """The start of a frame header split between reads."""
        self._goaway: bytearray | None = None
        """The payload of a GOAWAY being read."""

    def feed(self, data: bytes) -> tuple[bytes, list[tuple[int, int]]]:
        """The bytes for h2 (``data`` itself when nothing was taken out) and the GOAWAYs found in
        ``data``, each as (last stream id, error code)."""
        found: list[tuple[int, int]] = []
        if self._header:
            data = self._header + data
            self._header = b""
        keep: list[bytes] | None = None
        """Pieces for h2 once something was cut out; None while ``data`` goes whole."""
        kept_to = 0
        pos = 0
        end = len(data)
        while pos < end:
            left = self._left
            if left:
                take = min(left, end - pos)
                goaway = self._goaway
                if goaway is not None:  # its payload is cut out too
                    if keep is None:
                        keep = []
                    keep.append(data[kept_to:pos])
                    goaway += data[pos : pos + take]
                    kept_to = pos + take
                pos += take
                self._left = left - take
                if not self._left and goaway is not None:
                    found.append(_parsed(goaway))
                    self._goaway = None
                continue
            if end - pos < _HEADER:
                if keep is None:
                    keep = []
                keep.append(data[kept_to:pos])
                self._header = data[pos:]
                return b"".join(keep), found
            length = int.from_bytes(data[pos : pos + 3], "big")
            if data[pos + 3] == _GOAWAY and length >= _GOAWAY_MIN:
                if keep is None:
                    keep = []
                keep.append(data[kept_to:pos])
                self._goaway = bytearray()
                pos += _HEADER
                kept_to = pos
            else:
                pos += _HEADER
            self._left = length
        if keep is None:
            return data, found
        keep.append(data[kept_to:])
        return b"".join(keep), found


def _parsed(payload: bytearray) -> tuple[int, int]:
    return int.from_bytes(payload[0:4], "big") & 0x7FFFFFFF, int.from_bytes(payload[4:8], "big")
