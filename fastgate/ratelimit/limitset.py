"""One route's limits at one choice of rates, prepared once for the stores and the headers."""

from fastgate.ratelimit.algorithms import ALGORITHMS
from fastgate.ratelimit.headers import HeaderWriter
from fastgate.ratelimit.lua import ALGORITHM_CODES, ScriptArgs
from fastgate.ratelimit.scopes import LimitSpec


class LimitSet:
    """The route's limits at their configured rates, or (``fallback``) at their fallback rates,
    divided among ``instances`` gateways.

    Index i of every tuple is the route's i-th limit, as in the list ``RouteLimits.keys`` returns.
    """

    __slots__ = ("algorithms", "params", "headers", "every_limit", "script_args", "all_script_args", "_script_args",
                 "_quiet")

    def __init__(self, specs: list[LimitSpec], fallback: bool, writer: HeaderWriter, instances: int = 1) -> None:
        params = [spec.fallback_share(instances) if fallback else spec.params for spec in specs]
        self.algorithms = tuple(ALGORITHMS[spec.scope.algorithm] for spec in specs)
        """Each limit's algorithm (algorithms.py), for the local store."""
        self.params = tuple(params)
        self.headers = writer.prepare([spec.scope.name for spec in specs], [p.count for p in params],
                                      [p.period_us // 1_000_000 for p in params])
        self._script_args = tuple(
            (b"%d" % ALGORITHM_CODES[spec.scope.algorithm], b"%d" % p.count, b"%d" % p.period_us,
             b"%d" % p.capacity, b"%d" % p.interval_us)
            for spec, p in zip(specs, params))
        """The five script arguments of each limit (lua.py)."""
        self.every_limit = tuple(range(len(specs)))
        self._quiet = not writer.on_allowed
        self.script_args = {self.every_limit: ScriptArgs(self.every_limit, list(self._script_args), self._quiet)}
        """The script's ARGV for a check, by the limits that apply to it (every_limit: all of them);
        complete it with ``add_script_args``."""
        self.all_script_args = self.script_args[self.every_limit]
        """The script's ARGV for a check to which every limit applies (the usual case)."""

    def add_script_args(self, applied: tuple[int, ...]) -> ScriptArgs:
        """The ARGV of a check to which only the ``applied`` limits apply (kept for the next such check)."""
        args = self.script_args[applied] = ScriptArgs(applied, [self._script_args[i] for i in applied], self._quiet)
        return args
