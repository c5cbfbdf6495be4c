"""Rate strings: "5/10m" is 5 requests per 10 minutes; units s, m, h, d."""

import re
from typing import NamedTuple

_RATE = re.compile(r"^\s*(\d+)\s*/\s*(\d*)\s*([smhd])\s*$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_MAX_COUNT = 10**9
_MAX_PERIOD_S = 366 * 86400


class Rate(NamedTuple):
    count: int
    """Requests admitted per period."""
    period_s: int
    """Length of the period in whole seconds."""

    def share(self, parts: int) -> "Rate":
        """One of ``parts`` equal shares of this rate: the count divided (rounded down) when it is at
        least ``parts``, else one request per a period stretched to match (rounded up): the shares
        together never admit more than this rate."""
        if self.count >= parts:
            return Rate(self.count // parts, self.period_s)
        return Rate(1, -(-self.period_s * parts // self.count))


def parse_rate(text: str) -> Rate:
    """Parse "N/[M]unit" (e.g. "100/s", "5/10m", "1000/1h", "20/d"); ValueError says what is wrong."""
    m = _RATE.match(text)
    if m is None:
        raise ValueError(f"{text!r} is not a rate such as \"100/s\", \"5/10m\", \"1000/h\" or \"20/d\"")
    count = int(m.group(1))
    period_s = int(m.group(2) or 1) * _UNIT_S[m.group(3)]
    if not 1 <= count <= _MAX_COUNT:
        raise ValueError(f"{text!r}: the count must be between 1 and {_MAX_COUNT}")
    if not 1 <= period_s <= _MAX_PERIOD_S:
        raise ValueError(f"{text!r}: the period must be between 1 second and 366 days")
    return Rate(count, period_s)
