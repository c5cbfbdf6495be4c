"""A named group of upstream servers, compiled from config; pools are attached per worker."""

from fastgate.config.schema import Upstream


class UpstreamGroup:
    """An ``[[upstreams]]`` entry at run time.

    Built once in the master and inherited by every worker; ``attach_pools``
    is called in the worker, after fork, so each worker has its own pools.
    Servers are chosen round robin.
    """

    __slots__ = ("name", "addresses", "connect_timeout_s", "read_timeout_s", "total_timeout_s",
                 "max_idle", "idle_timeout_s", "max_requests", "pools", "_next")

    def __init__(self, config: Upstream) -> None:
        self.name = config.name
        self.addresses = tuple(_split(s) for s in config.servers)
        self.connect_timeout_s = float(config.connect_timeout)
        self.read_timeout_s = float(config.read_timeout)
        self.total_timeout_s = float(config.total_timeout)
        self.max_idle = config.max_idle_connections
        self.idle_timeout_s = float(config.idle_timeout)
        self.max_requests = config.max_requests_per_connection
        self.pools: tuple = ()
        self._next = 0

    def attach_pools(self, make_pool) -> None:
        self.pools = tuple(make_pool(self, host, port) for host, port in self.addresses)

    def pick(self):
        """The pool of the next server, round robin."""
        pools = self.pools
        i = self._next
        self._next = i + 1 if i + 1 < len(pools) else 0
        return pools[i]


def _split(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host.strip("[]"), int(port)


def compile_upstreams(configs: list[Upstream]) -> dict[str, UpstreamGroup]:
    return {c.name: UpstreamGroup(c) for c in configs}
