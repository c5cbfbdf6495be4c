"""Rate-limit response headers, built from the outcome of a check.

Styles (``[ratelimit].headers``):

- ``draft`` (draft-ietf-httpapi-ratelimit-headers-08 and later): one list
  item per limit of the route, named by its scope::

      RateLimit-Policy: "otp-phone";q=5;w=600, "otp-ip";q=20;w=600
      RateLimit: "otp-phone";r=4;t=120, "otp-ip";r=19;t=30

  ``q``/``w`` are the rate's count and period in seconds (static per route);
  ``r`` is the requests still admitted after this one (GCRA with a burst can
  show more than ``q``), ``t`` the seconds, rounded up, until the budget is
  full again. A limit that did not apply to the request (its key was absent)
  appears in RateLimit-Policy only.
- ``legacy``: ``RateLimit-Limit``, ``RateLimit-Remaining``, ``RateLimit-Reset``
  (same meanings) for one limit: when denied, the denying limit with the
  longest wait; otherwise the one with the fewest remaining requests (then
  the longest reset).
- ``none``: no rate-limit headers.

A denied request always gets ``Retry-After``: seconds, rounded up, until
every denying limit would admit it.
"""

from collections.abc import Sequence

from fastgate.ratelimit.decision import ALLOWED_WITHOUT_HEADERS, Decision

Shown = tuple[int, int, int, int]
"""What one applied limit tells the client: (limit index, remaining, reset_us, retry_us)."""


class HeaderParts:
    """The static pieces of one route's headers, computed at config load."""

    __slots__ = ("head", "items", "quotas")

    def __init__(self, head: bytes, items: tuple[bytes, ...], quotas: tuple[int, ...]) -> None:
        self.head = head
        """The RateLimit-Policy field and the start of the RateLimit field (draft style)."""
        self.items = items
        """Per limit: the start of its RateLimit item, ``"name";r=``."""
        self.quotas = quotas


class HeaderWriter:
    def __init__(self, style: str, on_allowed: bool) -> None:
        self.style = style
        self.on_allowed = on_allowed and style != "none"

    def prepare(self, names: Sequence[str], quotas: Sequence[int], windows_s: Sequence[int]) -> HeaderParts:
        """Static pieces for limits with these scope names, counts and periods."""
        items = tuple(b'"%s";r=' % name.encode() for name in names)
        head = b""
        if self.style == "draft":
            head = b"\r\nRateLimit-Policy: " + b", ".join(
                b'"%s";q=%d;w=%d' % (name.encode(), q, w) for name, q, w in zip(names, quotas, windows_s)
            ) + b"\r\nRateLimit: "
        return HeaderParts(head, items, tuple(quotas))

    def decide(self, parts: HeaderParts, shown: list[Shown], allowed: bool) -> Decision:
        """The Decision for a check whose applied limits show ``shown`` (in limit order)."""
        if allowed:
            if not self.on_allowed or not shown:
                return ALLOWED_WITHOUT_HEADERS
            return Decision(True, 200, 0.0, self._fields(parts, shown, allowed))
        retry_us = max(s[3] for s in shown)
        retry_s = -(-retry_us // 1_000_000)
        headers = b"\r\nRetry-After: %d" % retry_s
        if self.style != "none":
            headers = self._fields(parts, shown, allowed) + headers
        return Decision(False, 429, retry_us / 1_000_000, headers)

    def _fields(self, parts: HeaderParts, shown: list[Shown], allowed: bool) -> bytes:
        if self.style == "draft":
            items = parts.items
            return parts.head + b", ".join([items[i] + b"%d;t=%d" % (remaining, -(-reset_us // 1_000_000))
                                            for i, remaining, reset_us, _ in shown])
        if allowed:
            i, remaining, reset_us, _ = min(shown, key=lambda s: (s[1], -s[2]))
        else:
            i, remaining, reset_us, _ = max(shown, key=lambda s: s[3])
        return b"\r\nRateLimit-Limit: %d\r\nRateLimit-Remaining: %d\r\nRateLimit-Reset: %d" % (
            parts.quotas[i], remaining, -(-reset_us // 1_000_000))
