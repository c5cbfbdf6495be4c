"""The retry policy: which requests may go again, where, how often, after how long, within the budget."""

from dataclasses import dataclass

import pytest

from fastgate.config.schema import Upstream
from fastgate.config.units import Duration
from fastgate.upstream.group import UpstreamGroup
from fastgate.upstream.retry import MIN_RETRY_CONCURRENCY, MIN_RETRY_TIME_S, NO_DEADLINE, RetryBudget
from tests.support.fake_pool import Pool


@dataclass
class Head:
    method: bytes = b"GET"
    has_body: bool = False
    upgrade: bool = False


def group(**fields) -> UpstreamGroup:
    g = UpstreamGroup(Upstream(name="up", servers=["127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3"], **fields))
    g.attach_pools(lambda _, spec: Pool(spec.address), clock=None)
    return g


@pytest.mark.parametrize("head", [Head(b"POST"), Head(b"PATCH"), Head(has_body=True), Head(upgrade=True)],
                         ids=["post", "patch", "body", "upgrade"])
def test_only_idempotent_bodiless_requests_are_retried(head):
    g = group(retries=3)
    assert g.retry.server_for_retry(head, b"", [g.pools[0]], 0, NO_DEADLINE) is None


def test_retries_go_to_untried_servers_up_to_the_cap():
    g = group(retries=2)
    tried = [g.pools[0]]
    for attempt in range(2):
        other = g.retry.server_for_retry(Head(), b"", tried, attempt, NO_DEADLINE)
        assert other is not None and other not in tried
        tried.append(other)
    assert g.retry.server_for_retry(Head(), b"", tried[:1], 2, NO_DEADLINE) is None  # the cap, whatever is left
    many = group(retries=5)
    assert many.retry.server_for_retry(Head(), b"", list(many.pools), 1, NO_DEADLINE) is None  # no server left


def test_connect_retries_count_the_servers_tried():
    g = group(connect_retries=1)
    first = g.retry.server_after_connect_failure(Head(b"POST", has_body=True), b"", [g.pools[0]], NO_DEADLINE)
    assert first is not None and first is not g.pools[0]
    assert g.retry.server_after_connect_failure(Head(), b"", [g.pools[0], first], NO_DEADLINE) is None


def test_the_budget_is_a_share_of_the_requests_in_flight():
    budget = RetryBudget(0.2)
    for _ in range(MIN_RETRY_CONCURRENCY):
        assert budget.allows(0)
        budget.take()
    assert not budget.allows(10)  # 20% of 10 is 2, fewer than the 3 always allowed
    assert budget.allows(100)  # 20% of 100 is 20
    budget.give_back()
    assert budget.allows(0)


def test_a_first_retry_needs_room_in_the_budget_later_ones_do_not():
    g = group(retries=3, retry_budget=0.0)
    for _ in range(MIN_RETRY_CONCURRENCY):
        g.budget.take()
    assert g.retry.server_for_retry(Head(), b"", [g.pools[0]], 0, NO_DEADLINE) is None
    assert g.retry.server_for_retry(Head(), b"", [g.pools[0]], 1, NO_DEADLINE) is not None


def test_backoff_is_jittered_and_grows_exponentially():
    g = group(retry_backoff=Duration(0.1))
    for attempt, ceiling in ((1, 0.1), (2, 0.2), (3, 0.4)):
        waits = [g.retry.backoff(attempt, NO_DEADLINE) for _ in range(300)]
        assert all(0.0 <= w <= ceiling for w in waits)
        assert max(waits) > ceiling / 2 and min(waits) < ceiling / 2  # spread, not fixed


def test_no_attempt_starts_when_the_total_timeout_is_nearly_over():
    g = group(retries=3, retry_backoff=Duration(1.0))
    assert g.retry.server_for_retry(Head(), b"", [g.pools[0]], 0, MIN_RETRY_TIME_S / 2) is None
    assert g.retry.server_after_connect_failure(Head(), b"", [g.pools[0]], MIN_RETRY_TIME_S / 2) is None
    assert g.retry.server_for_retry(Head(), b"", [g.pools[0]], 0, 0.5) is not None
    assert all(g.retry.backoff(3, 0.3) <= 0.3 - MIN_RETRY_TIME_S for _ in range(100))  # the back-off leaves time


def test_a_route_sets_its_own_attempt_cap():
    g = group(retries=1)
    assert g.retry.with_retries(None) is g.retry and g.retry.with_retries(1) is g.retry
    route_policy = g.retry.with_retries(2)
    assert route_policy.retries == 2
    assert route_policy.server_for_retry(Head(), b"", [g.pools[0]], 1, NO_DEADLINE) is not None
    assert g.retry.server_for_retry(Head(), b"", [g.pools[0]], 1, NO_DEADLINE) is None
