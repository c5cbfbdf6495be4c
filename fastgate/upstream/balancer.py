"""Load balancers: which server of an upstream takes the next request. Pure logic, per worker.

A balancer chooses among *candidates*: the servers that are neither drained,
ejected (passive health, upstream/group.py), down (active health checks,
health/view.py) nor backups, or, when there is none, the backups that are
neither drained, ejected nor down. The
candidates are one immutable tuple, rebound as a whole when the set changes
(``set_candidates``), never edited in place.

Each candidate is a pool (upstream/pool.py) that carries ``weight``,
``active`` (requests in flight on this worker) and ``ewma_s`` (smoothed
response time); balancers read them and keep their own state.

- ``round_robin``: each candidate in turn; weights are ignored.
- ``weighted_round_robin``: nginx's smooth weighted round robin: over
  sum(weights) requests each server gets exactly its weight, interleaved.
- ``least_connections``: fewest requests in flight per unit of weight; ties
  go round robin.
- ``p2c_ewma``: two random candidates, the one with the lower
  (in-flight + 1) x smoothed response time wins.
- ``consistent_hash``: a hash ring with 160 points per unit of weight; a key
  stays on its server, and adding or removing a server moves only the keys
  that belong on it (about 1/N of them). A request without a key goes round
  robin.
- ``random``: weighted random.
"""

import bisect
import hashlib
import random
from itertools import accumulate

_POINTS_PER_WEIGHT = 160


def _hash64(key: bytes) -> int:
    return int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "big")


class Balancer:
    """The base: candidates and a round-robin cursor that subclasses fall back on."""

    needs_key = False
    """True when ``pick`` wants a key (consistent hashing)."""
    tracks_latency = False
    """True when pools must be told each response time (``observe``)."""

    def __init__(self, pools: tuple) -> None:
        self.pools = pools
        self.candidates: tuple = ()
        self._next = 0
        self.set_candidates(candidate_pools(pools))

    def set_candidates(self, candidates: tuple) -> None:
        self.candidates = candidates

    def _round_robin(self):
        candidates = self.candidates
        if not candidates:
            return None
        i = self._next
        if i >= len(candidates):
            i = 0
        self._next = i + 1
        return candidates[i]

    def pick(self, key: bytes | None = None):
        """The pool for the next request, or None when no server can take it."""
        return self._round_robin()


class WeightedRoundRobin(Balancer):
    def set_candidates(self, candidates: tuple) -> None:
        self.candidates = candidates
        self._current = [0] * len(candidates)
        self._total = sum(p.weight for p in candidates)

    def pick(self, key: bytes | None = None):
        candidates = self.candidates
        if not candidates:
            return None
        current = self._current
        best = 0
        for i, pool in enumerate(candidates):
            current[i] += pool.weight
            if current[i] > current[best]:
                best = i
        current[best] -= self._total
        return candidates[best]


class LeastConnections(Balancer):
    def pick(self, key: bytes | None = None):
        candidates = self.candidates
        if not candidates:
            return None
        n = len(candidates)
        start = self._next % n
        self._next = start + 1
        best = None
        best_load = 0.0
        for k in range(n):
            pool = candidates[(start + k) % n]
            load = pool.active / pool.weight
            if best is None or load < best_load:
                best, best_load = pool, load
        return best


class PowerOfTwoEwma(Balancer):
    tracks_latency = True

    def pick(self, key: bytes | None = None):
        candidates = self.candidates
        if len(candidates) < 2:
            return candidates[0] if candidates else None
        a, b = random.sample(candidates, 2)
        return a if (a.active + 1) * a.ewma_s <= (b.active + 1) * b.ewma_s else b


class ConsistentHash(Balancer):
    needs_key = True

    def set_candidates(self, candidates: tuple) -> None:
        self.candidates = candidates
        points = sorted(
            (_hash64(b"%s#%d" % (pool.label.encode(), i)), pool)
            for pool in candidates
            for i in range(_POINTS_PER_WEIGHT * pool.weight)
        )
        self._hashes = [h for h, _ in points]
        self._owners = [pool for _, pool in points]

    def pick(self, key: bytes | None = None):
        if key is None or not self._owners:
            return self._round_robin()
        i = bisect.bisect(self._hashes, _hash64(key))
        return self._owners[i if i < len(self._owners) else 0]


class WeightedRandom(Balancer):
    def set_candidates(self, candidates: tuple) -> None:
        self.candidates = candidates
        self._cumulative = list(accumulate(p.weight for p in candidates))

    def pick(self, key: bytes | None = None):
        if not self.candidates:
            return None
        return random.choices(self.candidates, cum_weights=self._cumulative)[0]


BALANCERS = {
    "round_robin": Balancer,
    "weighted_round_robin": WeightedRoundRobin,
    "least_connections": LeastConnections,
    "p2c_ewma": PowerOfTwoEwma,
    "consistent_hash": ConsistentHash,
    "random": WeightedRandom,
}


def candidate_pools(pools: tuple) -> tuple:
    """Servers not drained, not ejected, not down and not backups; else such backups."""
    primaries = tuple(p for p in pools if not p.backup and not p.drain and not p.ejected and not p.down)
    return primaries or tuple(p for p in pools if p.backup and not p.drain and not p.ejected and not p.down)
