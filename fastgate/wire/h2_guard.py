"""Abuse accounting of one HTTP/2 client connection, done on the bytes before h2 parses them (sans-IO).

Theory of operation
-------------------
The h2 library keeps what the protocol requires, not what a server can afford: it buffers a header
block of up to 64 CONTINUATION frames of the largest frame size before it decodes any of it, answers
every PING and SETTINGS, and accepts any number of PRIORITY, WINDOW_UPDATE, RST_STREAM and empty
DATA frames. ``FrameGuard.scan`` walks the frame headers of what a client sent (9 bytes each:
payload length, type, flags, stream id) before the bytes go to h2. It keeps only the part of a
frame header split between two reads, skips payloads without copying them, and names a reason to
end the connection (GOAWAY ENHANCE_YOUR_CALM), or None:

- HEADER_BLOCK: the frames of one header block (HEADERS or PUSH_PROMISE, then CONTINUATION),
  counted with their 9-byte headers, add up to more than the header list may be (plus
  ``BLOCK_SLACK_BYTES`` for padding and priority fields): it is cut before h2 buffers or decodes
  it, and endless empty CONTINUATION frames end the same way. (A small block that decodes into a
  larger list, an HPACK bomb, is h2's to find: its decoder stops at the same size, HEADER_LIST.)
- FLOOD: overhead frames, which carry no request forward (SETTINGS, PING, PRIORITY,
  WINDOW_UPDATE, RST_STREAM, DATA with no payload and no END_STREAM, unknown types), spend an
  ``Allowance``; each HEADERS frame (a request, or its trailers), each DATA frame with a payload
  either way, and every ``REFUND_BYTES`` of response the gateway sends (``sent``) give one back,
  since a request may rightly bring a PRIORITY or a reset, and a client answers the DATA it
  receives with window updates and pings (a gRPC stream of small messages brings BDP pings with
  every read). Like Envoy's limit of window updates per DATA frame sent, this does not catch a
  client that drains a response through tiny windows one frame at a time: that costs it a frame
  per frame, with no amplification. (DATA costs its sender flow-control window, and a client may
  send 1-byte DATA frames anyway: paying back for them at most doubles its frames.)

The connection also spends the resets allowance (``reset``) when the client resets a stream still
in progress, or opens one past the concurrency limit: RAPID_RESET (CVE-2023-44487).

An ``Allowance`` is a token bucket: it holds at most ``most``, refills at ``most`` per window, and
is spent by one per event; a spend that finds it empty is the abuse.
"""

import struct

RAPID_RESET = "rapid_reset"
"""Streams reset by the client while in progress (or refused past the concurrency limit), too many."""
FLOOD = "flood"
"""Overhead frames (no request progress), too many."""
HEADER_BLOCK = "header_block"
"""A header block larger than the header list limit, cut before it was decoded (CONTINUATION flood)."""
HEADER_LIST = "header_list"
"""A header block that decoded into a list larger than the limit (HPACK bomb)."""
PROTOCOL_ERROR = "protocol_error"
"""Any other connection error the h2 library found (stream id misuse, flow-control overflow, bad frames)."""
REASONS = (RAPID_RESET, FLOOD, HEADER_BLOCK, HEADER_LIST, PROTOCOL_ERROR)
"""The reason label of ``fastgate_http2_abuse_total``."""

REFUND_BYTES = 4096
"""Response bytes sent to the client that pay for one of its overhead frames."""
BLOCK_SLACK_BYTES = 1024
"""What a header block may carry beyond the header list limit before it is cut (padding, priority)."""

_PREFACE_BYTES = 24
"""The client connection preface, which h2 checks: skipped here."""
_FRAME_HEAD = struct.Struct(">HBBBL")
"""A frame header: the payload length (24 bits, split 16 + 8), type, flags, R bit and stream id."""
_DATA, _HEADERS, _PUSH_PROMISE, _CONTINUATION = 0x0, 0x1, 0x5, 0x9
_END_STREAM, _END_HEADERS = 0x1, 0x4
_OVERHEAD = bytes(1 if kind in (0x2, 0x3, 0x4, 0x6, 0x8) or kind > _CONTINUATION else 0 for kind in range(256))
"""Frame types that carry no request forward: PRIORITY, RST_STREAM, SETTINGS, PING, WINDOW_UPDATE,
and the types RFC 9113 does not define (h2 ignores them)."""


class Allowance:
    """A token bucket: ``spend`` takes one (False once there is none), refilling ``most`` per ``window_s``."""

    __slots__ = ("most", "per_s", "left", "at")

    def __init__(self, most: int, window_s: float, now: float) -> None:
        self.most = float(most)
        self.per_s = most / window_s
        self.left = float(most)
        self.at = now

    def spend(self, now: float) -> bool:
        left = min(self.most, self.left + (now - self.at) * self.per_s) - 1.0
        self.at = now
        self.left = left
        return left >= 0.0

    def give(self, count: float) -> None:
        self.left = min(self.most, self.left + count)


class FrameGuard:
    """The frame-level defences of one connection (see the module's theory of operation)."""

    __slots__ = ("skip", "partial", "block_bytes", "max_block_bytes", "overhead", "resets", "verdict")

    def __init__(self, max_header_list_bytes: int, max_overhead_frames: int, overhead_window_s: float,
                 max_resets: int, reset_window_s: float, now: float) -> None:
        self.skip = _PREFACE_BYTES
        """Bytes still to pass before the next frame header (the rest of a payload)."""
        self.partial = b""
        """The start of a frame header that a read ended in."""
        self.block_bytes = -1
        """Bytes of the header block in progress (frames without END_HEADERS yet); -1: none."""
        self.max_block_bytes = max_header_list_bytes + BLOCK_SLACK_BYTES
        self.overhead = Allowance(max_overhead_frames, overhead_window_s, now)
        self.resets = Allowance(max_resets, reset_window_s, now)
        self.verdict = ""
        """Why ``scan`` last found abuse (one of REASONS)."""

    def scan(self, data: bytes, now: float) -> str | None:
        """Account for the frames in ``data``, the next bytes from the client; a reason ends the connection."""
        size = len(data)
        at = self.skip
        if self.partial:
            need = _FRAME_HEAD.size - len(self.partial)
            head = self.partial + data[:need]
            if len(head) < _FRAME_HEAD.size:
                self.partial = head
                return None
            self.partial = b""
            length = self._frame(head, 0, now)
            if length < 0:
                return self.verdict
            at = need + length
        while at + _FRAME_HEAD.size <= size:
            length = self._frame(data, at, now)
            if length < 0:
                return self.verdict
            at += _FRAME_HEAD.size + length
        if at < size:
            self.partial = data[at:]
            self.skip = 0
        else:
            self.skip = at - size
        return None

    def _frame(self, data: bytes, at: int, now: float) -> int:
        """Account for the frame whose header is at ``at``: its payload length, or -1 (``verdict`` says why)."""
        high, low, kind, flags, _ = _FRAME_HEAD.unpack_from(data, at)
        length = high << 8 | low
        if kind == _HEADERS or kind == _PUSH_PROMISE or kind == _CONTINUATION:
            if kind != _CONTINUATION:
                block = _FRAME_HEAD.size + length
            elif self.block_bytes >= 0:
                block = self.block_bytes + _FRAME_HEAD.size + length
            else:
                return length  # no block to continue: h2's connection error
            if block > self.max_block_bytes:
                self.verdict = HEADER_BLOCK
                return -1
            self.block_bytes = -1 if flags & _END_HEADERS else block
            if kind == _HEADERS:
                self.overhead.give(1.0)  # a request (or its trailers) may bring a PRIORITY, a reset, ...
        elif _OVERHEAD[kind] or (kind == _DATA and not length and not flags & _END_STREAM):
            if not self.overhead.spend(now):
                self.verdict = FLOOD
                return -1
        elif kind == _DATA:
            self.overhead.give(1.0)  # request data, which we acknowledge and a client may ping about
        return length

    def sent(self, frames: int, data_bytes: int) -> None:
        """``frames`` response DATA frames of ``data_bytes`` went to the client: it may answer each
        with a window update or a ping (gRPC's BDP probe), and a large one with more."""
        self.overhead.give(frames + data_bytes / REFUND_BYTES)

    def reset(self, now: float) -> str | None:
        """The client reset a stream in progress, or opened one past the concurrency limit."""
        return None if self.resets.spend(now) else RAPID_RESET
