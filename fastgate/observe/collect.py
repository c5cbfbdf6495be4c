"""Reading the shared metrics region: the instance's totals and each live worker's values."""

from fastgate.observe.metrics import FAMILIES, GAUGE
from fastgate.observe.shm import MetricsRegion

_ATTEMPTS = 5


class Snapshot:
    """One consistent read of the region."""

    __slots__ = ("totals", "workers")

    def __init__(self, totals: dict, workers: list) -> None:
        self.totals = totals
        """{(family, labels, part): value} summed over exited and live workers (zeros left out)."""
        self.workers = workers
        """[(seat header fields as a dict, {series: value})] for each live worker."""


def collect(region: MetricsRegion) -> Snapshot:
    """Sum the totals seat and every live seat; retried if the master folded a seat meanwhile."""
    for _ in range(_ATTEMPTS):
        sequence = region.sequence
        if sequence % 2:
            continue
        layout, values = region.read_seat(0)
        totals = {key: value for key, value in zip(layout, values) if value}
        workers = []
        for seat in region.live_seats():
            _, pid, index, generation, started, _, _ = region.seat_header(seat)
            layout, values = region.read_seat(seat)
            own = {key: value for key, value in zip(layout, values) if value}
            for key, value in own.items():
                totals[key] = totals.get(key, 0.0) + value
            workers.append(({"pid": pid, "index": index, "generation": generation, "started": started}, own))
        if region.sequence == sequence:
            return Snapshot(totals, workers)
    return Snapshot(totals, workers)


def fold(region: MetricsRegion, totals: dict, seat: int) -> None:
    """Master: add an exited worker's counters to ``totals`` and free its seat (gauges are dropped)."""
    layout, values = region.read_seat(seat)
    for key, value in zip(layout, values):
        if value and FAMILIES[key[0]][0] != GAUGE:
            totals[key] = totals.get(key, 0.0) + value
    region.write_totals(totals, free=seat)
