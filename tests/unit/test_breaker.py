"""The error-ratio circuit breaker's states, and the connection limit's slots and waiters."""

from dataclasses import dataclass, field

from fastgate.upstream.breaker import CLOSED, HALF_OPEN, OPEN, PROBES, ErrorRatioBreaker
from fastgate.upstream.connection_limit import ConnectionLimit


@dataclass
class Group:
    name: str = "api"
    answered: int = 0
    failed: int = 0
    tripped: bool = False


def breaker(group: Group) -> ErrorRatioBreaker:
    return ErrorRatioBreaker(group, ratio=0.5, min_requests=10, window_s=10.0, open_s=5.0)


def opened_at_1s(group: Group) -> ErrorRatioBreaker:
    """A breaker that 20 failures opened on its tick at 1 s (half-open from 6 s)."""
    b = breaker(group)
    b.tick(0.0)
    group.failed = 20
    b.tick(1.0)
    return b


def test_opens_on_the_ratio_with_enough_requests_only():
    group = Group()
    b = breaker(group)
    b.tick(0.0)
    group.failed = 9  # 100% failed, but fewer than min_requests
    b.tick(1.0)
    assert b.state == CLOSED and not group.tripped
    group.answered, group.failed = 11, 9  # 9 of 20: under half
    b.tick(2.0)
    assert b.state == CLOSED
    group.failed = 12  # 12 of 23
    b.tick(3.0)
    assert b.state == OPEN and group.tripped
    assert not b.admit() and b.retry_after(3.5) == 5


def test_failures_before_the_first_tick_count():
    group = Group(answered=2, failed=10)
    b = breaker(group)
    b.tick(100.0)
    assert b.state == OPEN


def test_failures_older_than_the_window_do_not_count():
    group = Group()
    b = breaker(group)
    b.tick(0.0)
    group.failed = 8
    b.tick(1.0)
    group.answered = 6
    b.tick(12.0)  # the 8 failures are older than 10s: 0 of 6
    group.failed = 10
    b.tick(13.0)  # 2 failed of 8 in the window, too few anyway
    assert b.state == CLOSED


def test_half_opens_lets_probes_through_and_closes_on_success():
    group = Group()
    b = opened_at_1s(group)
    assert b.state == OPEN
    b.tick(5.5)
    assert b.state == OPEN  # open_s not over yet
    b.tick(6.0)
    assert b.state == HALF_OPEN and group.tripped
    assert [b.admit() for _ in range(PROBES + 2)] == [True] * PROBES + [False, False]
    group.answered += 1  # a probe succeeded
    b.tick(6.5)
    assert b.state == CLOSED and not group.tripped
    b.tick(7.0)  # the old failures are forgotten with the fresh window
    assert b.state == CLOSED


def test_a_failed_probe_opens_it_again():
    group = Group()
    b = opened_at_1s(group)
    b.tick(6.0)
    assert b.admit()
    b.failed_while_tripped(6.2)
    assert b.state == OPEN and group.tripped and b.retry_after(6.2) == 5
    b.tick(11.2)
    assert b.state == HALF_OPEN


def test_unused_probes_are_granted_again():
    group = Group()
    b = opened_at_1s(group)
    b.tick(6.0)
    assert all(b.admit() for _ in range(PROBES))  # they never reach a server
    assert not b.admit()
    b.tick(11.0)
    assert b.state == HALF_OPEN and b.admit()


@dataclass(eq=False)
class Conn:
    closed: bool = False

    def close(self) -> None:
        self.closed = True


@dataclass(eq=False)
class Pool:
    idle: list = field(default_factory=list)


@dataclass(eq=False)
class Waiter:
    pool: Pool
    got: list = field(default_factory=list)

    def connection_slot_free(self) -> None:
        self.got.append("slot")

    def take_connection(self, conn) -> None:
        self.got.append(conn)


def test_waiters_get_freed_slots_in_order_and_the_queue_is_bounded():
    limit = ConnectionLimit(max_connections=2, max_pending=2)
    a, b = Pool(), Pool()
    limit.opened()
    limit.opened()
    assert limit.full()
    first, second, third = Waiter(a), Waiter(b), Waiter(a)
    assert limit.wait(first, (a, b)) and limit.wait(second, (a, b))
    assert not limit.wait(third, (a, b))  # max_pending are waiting already
    limit.closed()
    assert first.got == ["slot"] and second.got == []
    limit.cancel(second)
    limit.closed()
    assert second.got == [] and limit.open == 0


def test_a_released_connection_goes_to_a_waiter_for_its_server_or_is_closed():
    limit = ConnectionLimit(max_connections=1, max_pending=4)
    a, b = Pool(), Pool()
    limit.opened()
    for_b = Waiter(b)
    limit.wait(for_b, (a, b))
    conn = Conn()
    limit.hand_over(a, conn)  # nobody waits for a: closed, so its slot frees
    assert conn.closed and for_b.got == []
    for_a = Waiter(a)
    limit.wait(for_a, (a, b))
    conn = Conn()
    limit.hand_over(a, conn)
    assert for_a.got == [conn] and not conn.closed
    assert list(limit.waiting) == [for_b]


def test_waiting_closes_an_idle_connection_to_free_a_slot():
    limit = ConnectionLimit(max_connections=1, max_pending=4)
    a, b = Pool(), Pool()
    idle = Conn()
    a.idle.append(idle)
    limit.opened()
    assert limit.wait(Waiter(b), (a, b))
    assert idle.closed and a.idle == []
