"""Percentile estimates from histogram buckets, as PromQL's histogram_quantile makes them."""

import pytest

from fastgate.observe.metrics import LATENCY_BUCKETS_S
from fastgate.observe.prometheus import quantiles
from fastgate.ratelimit.stats import ROUND_TRIP_BUCKETS_S

BOUNDS = (0.001, 0.01, 0.1)


def test_no_observation_gives_zeros():
    assert quantiles({}, (0.5, 0.99), BOUNDS) == [0.0, 0.0]


def test_interpolates_within_the_bucket_that_holds_the_rank():
    # 10 observations in (0.001, 0.01]: the median is halfway through that bucket
    assert quantiles({1: 10}, (0.5, 0.9), BOUNDS) == pytest.approx([0.0055, 0.0091])


def test_skips_empty_buckets_between_filled_ones():
    # 50 under 1 ms, 50 in (10 ms, 100 ms]: p90 is 40 of the upper 50 into the third bucket
    assert quantiles({0: 50, 2: 50}, (0.5, 0.9), BOUNDS) == pytest.approx([0.001, 0.01 + 0.09 * 40 / 50])


def test_a_rank_in_the_inf_bucket_gives_the_last_bound():
    assert quantiles({0: 1, 3: 9}, (0.05, 0.5), BOUNDS) == pytest.approx([0.0005, 0.1])


def test_each_family_uses_its_own_bounds():
    # the 4th bucket is (0.5 ms, 1 ms] for Redis round trips but (5 ms, 10 ms] for requests
    assert quantiles({3: 100}, (0.5,), ROUND_TRIP_BUCKETS_S) == pytest.approx([0.00075])
    assert quantiles({3: 100}, (0.5,), LATENCY_BUCKETS_S) == pytest.approx([0.0075])
