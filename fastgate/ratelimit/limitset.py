"""One route's limits at one choice of rates, prepared once for the stores and the headers."""

from fastgate.ratelimit.algorithms import ALGORITHMS
from fastgate.ratelimit.headers import HeaderWriter
from fastgate.ratelimit.lua import ALGORITHM_CODES
from fastgate.ratelimit.scopes import LimitSpec


class LimitSet:
    """The route's limits at their configured rates, or (``fallback``) at their fallback rates.

    Index i of every tuple is the route's i-th limit, as in the list ``RouteLimits.keys`` returns.
    """

    __slots__ = ("algorithms", "params", "headers", "script_args")

    def __init__(self, specs: list[LimitSpec], fallback: bool, writer: HeaderWriter) -> None:
        params = [spec.fallback if fallback else spec.params for spec in specs]
        self.algorithms = tuple(ALGORITHMS[spec.scope.algorithm] for spec in specs)
        """Each limit's algorithm (algorithms.py), for the local store."""
        self.params = tuple(params)
        self.headers = writer.prepare([spec.scope.name for spec in specs], [p.count for p in params],
                                      [p.period_us // 1_000_000 for p in params])
        self.script_args = tuple(
            (b"%d" % ALGORITHM_CODES[spec.scope.algorithm], b"%d" % p.count, b"%d" % p.period_us,
             b"%d" % p.capacity, b"%d" % p.interval_us)
            for spec, p in zip(specs, params))
        """The five script arguments of each limit (lua.py)."""
