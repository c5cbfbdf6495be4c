"""GCRA, sliding-window counter and fixed window, driven by an injected clock (integer microseconds)."""

from typing import NamedTuple

from fastgate.ratelimit.algorithms import ALGORITHMS, LimitParams

gcra, sliding_window, fixed_window = ALGORITHMS["gcra"], ALGORITHMS["sliding_window"], ALGORITHMS["fixed_window"]

S = 1_000_000
T0 = 1_000 * 3600 * S
"""An instant that starts a window for every period used here."""


class Verdict(NamedTuple):
    allowed: bool
    remaining: int
    """Shown: requests left after this one."""
    reset_us: int
    """Shown: until the budget is full again (after this request when allowed)."""
    retry_us: int
    state: tuple | None
    """The state stored when allowed; its first item is its expiry."""


def verdict(algorithm, params, state, now) -> Verdict:
    """One request: what admit decides and what show tells the client."""
    admitted = algorithm.admit(params, state, now)
    assert admitted is None or len(admitted) == algorithm.size
    return Verdict(admitted is not None, *algorithm.show(params, state, now, admitted is not None), admitted)


def run(algorithm, params, state, now, n):
    """Send n requests at ``now``; return (verdicts, final state), storing the state of admitted ones."""
    verdicts = []
    for _ in range(n):
        v = verdict(algorithm, params, state, now)
        verdicts.append(v)
        if v.allowed:
            state = v.state
    return verdicts, state


def test_gcra_admits_count_at_once_then_one_per_interval():
    p = LimitParams.of(5, 10 * S, 0)
    assert p.interval_us == 2 * S and p.capacity == 5
    verdicts, state = run(gcra, p, None, T0, 6)
    assert [v.allowed for v in verdicts] == [True] * 5 + [False]
    assert [v.remaining for v in verdicts] == [4, 3, 2, 1, 0, 0]
    assert [v.reset_us for v in verdicts[:5]] == [2 * S, 4 * S, 6 * S, 8 * S, 10 * S]
    assert verdicts[5].retry_us == 2 * S and verdicts[5].reset_us == 10 * S
    assert state == (T0 + 10 * S,)
    verdicts, state = run(gcra, p, state, T0 + 2 * S - 1, 1)
    assert not verdicts[0].allowed and verdicts[0].retry_us == 1
    verdicts, state = run(gcra, p, state, T0 + 2 * S, 2)
    assert [v.allowed for v in verdicts] == [True, False]


def test_gcra_burst_adds_to_the_bucket_and_state_expires_when_full():
    p = LimitParams.of(5, 10 * S, 3)
    verdicts, state = run(gcra, p, None, T0, 9)
    assert [v.allowed for v in verdicts].count(True) == 8
    assert verdicts[-1].retry_us == 2 * S
    last = verdicts[7]
    assert last.state[0] == T0 + 16 * S  # expiry: the bucket is full again 8 intervals later
    assert verdict(gcra, p, state, last.state[0]).remaining == 7  # 8 fit, this one counted


def test_gcra_interval_rounds_up_to_whole_microseconds():
    p = LimitParams.of(3, 1 * S, 0)
    assert p.interval_us == 333_334
    verdicts, _ = run(gcra, p, None, T0, 4)
    assert [v.allowed for v in verdicts] == [True, True, True, False]


def test_sliding_window_within_one_window_is_exact():
    p = LimitParams.of(4, 10 * S, 0)
    verdicts, state = run(sliding_window, p, None, T0, 5)
    assert [v.allowed for v in verdicts] == [True] * 4 + [False]
    assert [v.remaining for v in verdicts] == [3, 2, 1, 0, 0]
    assert verdicts[0].reset_us == 20 * S  # the count decays away by the end of the next window
    # Full window: wait for the next one, where the 4 requests weigh 3 after 2.5 s.
    assert verdicts[4].retry_us == 12_500_000
    assert state == (T0 + 20 * S, 0, 4)  # expires when this window's count has decayed


def test_sliding_window_weighs_the_previous_window():
    p = LimitParams.of(4, 10 * S, 0)
    _, state = run(sliding_window, p, None, T0, 4)
    assert sliding_window.admit(p, state, T0 + 12_400_000) is None
    verdicts, state = run(sliding_window, p, state, T0 + 15 * S, 3)  # previous 4 weigh 2 at mid-window
    assert [v.allowed for v in verdicts] == [True, True, False]
    assert verdicts[2].retry_us == 2_500_000  # until 4 * weight <= 4 - 1 - 2
    verdicts, _ = run(sliding_window, p, state, T0 + 17_500_000, 1)
    assert verdicts[0].allowed


def test_sliding_window_forgets_windows_older_than_the_previous_one():
    p = LimitParams.of(2, 10 * S, 0)
    _, state = run(sliding_window, p, None, T0, 2)
    verdicts, _ = run(sliding_window, p, state, T0 + 20 * S, 3)
    assert [v.allowed for v in verdicts] == [True, True, False]


def test_fixed_window_counts_per_aligned_window():
    p = LimitParams.of(3, 10 * S, 0)
    verdicts, state = run(fixed_window, p, None, T0 + 4 * S, 4)
    assert [v.allowed for v in verdicts] == [True, True, True, False]
    assert [v.remaining for v in verdicts] == [2, 1, 0, 0]
    assert verdicts[0].reset_us == 6 * S
    assert verdicts[3].retry_us == 6 * S and verdicts[3].reset_us == 6 * S
    assert verdicts[2].state == (T0 + 10 * S, 3)
    verdicts, _ = run(fixed_window, p, state, T0 + 10 * S, 4)
    assert [v.allowed for v in verdicts] == [True, True, True, False]
