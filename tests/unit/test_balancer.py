"""Load balancers: distributions, stickiness and movement, backup and drain."""

from collections import Counter

import pytest

from fastgate.upstream.balancer import BALANCERS, candidate_pools
from tests.support.fake_pool import Pool


def counts(balancer, n: int, keys=None) -> Counter:
    return Counter(balancer.pick(keys[i] if keys else None).label for i in range(n))


def test_round_robin_ignores_weights():
    pools = (Pool("a", 1), Pool("b", 5), Pool("c", 1))
    assert counts(BALANCERS["round_robin"](pools), 300) == {"a": 100, "b": 100, "c": 100}


def test_smooth_weighted_round_robin_is_exact_and_interleaved():
    balancer = BALANCERS["weighted_round_robin"]((Pool("a", 5), Pool("b", 1), Pool("c", 1)))
    sequence = [balancer.pick().label for _ in range(7)]
    assert Counter(sequence) == {"a": 5, "b": 1, "c": 1}
    assert sequence == ["a", "a", "b", "a", "c", "a", "a"]  # nginx's smooth order, not a burst of five


@pytest.mark.parametrize("name", ["random"])
def test_random_follows_weights(name):
    result = counts(BALANCERS[name]((Pool("a", 1), Pool("b", 3))), 8000)
    assert abs(result["b"] / 8000 - 0.75) < 0.03


def test_least_connections_prefers_the_least_loaded_per_weight():
    a, b, c = Pool("a", active=3), Pool("b", active=1), Pool("c", weight=4, active=2)
    balancer = BALANCERS["least_connections"]((a, b, c))
    assert balancer.pick() is c  # 2/4 in flight per unit of weight beats 1/1 and 3/1
    c.active = 8
    assert balancer.pick() is b


def test_p2c_prefers_the_faster_of_two():
    slow, fast = Pool("slow", ewma_s=0.5), Pool("fast", ewma_s=0.001)
    balancer = BALANCERS["p2c_ewma"]((slow, fast))
    assert counts(balancer, 50) == {"fast": 50}
    fast.active = 1000  # busy enough to lose against the slow one
    assert balancer.pick() is slow


def test_consistent_hash_keeps_a_key_and_moves_about_one_nth_when_a_server_joins():
    keys = [b"user-%d" % i for i in range(4000)]
    three = (Pool("a"), Pool("b"), Pool("c"))
    before = BALANCERS["consistent_hash"](three)
    owner = {k: before.pick(k).label for k in keys}
    assert all(before.pick(k).label == owner[k] for k in keys[:200])  # sticky
    share = Counter(owner.values())
    assert all(abs(share[p] / 4000 - 1 / 3) < 0.06 for p in "abc")
    after = BALANCERS["consistent_hash"]((*three, Pool("d")))
    moved = [k for k in keys if after.pick(k).label != owner[k]]
    assert all(after.pick(k).label == "d" for k in moved)  # keys only move to the new server
    assert abs(len(moved) / 4000 - 1 / 4) < 0.06


def test_consistent_hash_without_a_key_goes_round_robin():
    balancer = BALANCERS["consistent_hash"]((Pool("a"), Pool("b")))
    assert counts(balancer, 10) == {"a": 5, "b": 5}


def test_backups_only_when_no_primary_and_drained_never():
    a, b, spare = Pool("a", drain=True), Pool("b"), Pool("spare", backup=True)
    assert candidate_pools((a, b, spare)) == (b,)
    b.drain = True
    assert candidate_pools((a, b, spare)) == (spare,)
    spare.drain = True
    assert candidate_pools((a, b, spare)) == ()
    assert BALANCERS["round_robin"]((a, b, spare)).pick() is None


def test_servers_down_by_health_check_are_skipped_like_ejected_ones():
    a, b, spare = Pool("a", down=True), Pool("b", ejected=True), Pool("spare", backup=True)
    assert candidate_pools((a, b, spare)) == (spare,)
    spare.down = True
    assert candidate_pools((a, b, spare)) == ()
    a.down = False
    assert candidate_pools((a, b, spare)) == (a,)
