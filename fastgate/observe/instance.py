"""The master's side of the shared metrics: seats for workers, folding exited ones, its own counters."""

import time

from fastgate.observe.collect import fold
from fastgate.observe.errorlog import log
from fastgate.observe.shm import MetricsRegion

_MIN_SEATS = 32


class InstanceMetrics:
    def __init__(self, workers: int) -> None:
        self.region = MetricsRegion(max(_MIN_SEATS, 4 * workers))
        """Seats for two generations side by side during a reload, and room to grow."""
        self.totals: dict = {("fastgate_worker_restarts_total", "", 0): 0.0}
        """Counters of exited workers and of the master, as written to seat 0; the restarts from 0,
        so that a crash loop alert sees the first restarts."""
        self.region.write_totals(self.totals)

    def seat_for(self, index: int, generation: int) -> int:
        """A seat for a worker about to be forked; 0 (no shared metrics) when all are taken."""
        seat = self.region.claim_seat(index, generation, time.time())
        if not seat:
            log.warning("no free metrics seat for a new worker; its numbers will be missing from /metrics")
        return seat

    def worker_exited(self, seat: int, restarted: bool) -> None:
        if restarted:
            self._add("fastgate_worker_restarts_total", "")
        if seat:
            fold(self.region, self.totals, seat)
        elif restarted:
            self.region.write_totals(self.totals)

    def reloaded(self, result: str) -> None:
        self._add("fastgate_reloads_total", f'result="{result}"')
        self.region.write_totals(self.totals)

    def set_state(self, state: int) -> None:
        self.region.set_state(state)

    def _add(self, family: str, labels: str) -> None:
        key = (family, labels, 0)
        self.totals[key] = self.totals.get(key, 0.0) + 1
