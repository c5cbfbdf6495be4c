"""Reading the shared metrics region: the instance's totals and each live worker's values."""

from operator import add

from fastgate.observe.metrics import FAMILIES, GAUGE
from fastgate.observe.shm import MetricsRegion

_ATTEMPTS = 5
_IS_GAUGE = {family: kind == GAUGE for family, (kind, _) in FAMILIES.items()}


class Snapshot:
    """One consistent read of the region."""

    __slots__ = ("totals", "workers")

    def __init__(self, totals: dict, workers: list) -> None:
        self.totals = totals
        """{(family, labels, part): value} summed over exited and live workers. Counters and
        histograms at zero are left out (a thousand routes make tens of thousands of them),
        but for the instance-wide ones without labels (a few: worker restarts, Redis round
        trips...), which are kept so that rate() and alerts see their first increase; gauges
        are kept at zero, because 0 says something (a server is up, a breaker closed), and so
        every configured server is listed even before it served anything."""
        self.workers = workers
        """[(seat header fields as a dict, layout, values)] for each live worker."""


def collect(region: MetricsRegion) -> Snapshot:
    """Sum the totals seat and every live seat; retried if the master folded a seat meanwhile.

    Seats with the same layout (workers of one config generation) are added
    element by element first, so the per-series Python work is paid once
    per layout, not once per worker.
    """
    for _ in range(_ATTEMPTS):
        sequence = region.sequence
        if sequence % 2:
            continue
        sums: dict[int, list] = {}
        workers = []
        for seat in [0, *region.live_seats()]:
            layout, values = region.read_seat(seat)
            if seat:
                _, pid, index, generation, started, _, _ = region.seat_header(seat)
                workers.append(({"pid": pid, "index": index, "generation": generation, "started": started},
                                layout, values))
            if not layout:
                continue
            same = sums.get(id(layout))
            sums[id(layout)] = [layout, values if same is None else list(map(add, same[1], values))]
        if region.sequence == sequence:
            break
    totals: dict = {}
    for layout, values in sums.values():
        for key, value in zip(layout, values):
            if value or _IS_GAUGE[key[0]] or not key[1]:
                totals[key] = totals.get(key, 0.0) + value
    return Snapshot(totals, workers)


def fold(region: MetricsRegion, totals: dict, seat: int) -> None:
    """Master: add an exited worker's counters to ``totals`` and free its seat (gauges are dropped)."""
    layout, values = region.read_seat(seat)
    for key, value in zip(layout, values):
        if value and FAMILIES[key[0]][0] != GAUGE:
            totals[key] = totals.get(key, 0.0) + value
    region.write_totals(totals, free=seat)
