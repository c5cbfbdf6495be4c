"""The shared health table: start state, rise and fall, the generation, carry-over, sharing across fork."""

import os

from fastgate.health.state import DOWN, UNPROVEN, UP, HealthTable

KEYS = [("api", "10.0.0.1:80"), ("api", "10.0.0.2:80")]


def run(table: HealthTable, slot: int, results: str, rise: int = 2, fall: int = 3) -> list[bool]:
    """Record "+" (passed) and "-" (failed) checks; return whether each one changed up/down."""
    return [table.record(slot, r == "+", rise, fall) for r in results]


def test_servers_start_up_and_one_failure_before_any_pass_takes_them_down():
    table = HealthTable(KEYS)
    assert [table.is_up(s) for s in (0, 1)] == [True, True]
    assert table.read(0).state == UNPROVEN
    assert run(table, 0, "-") == [True]
    assert not table.is_up(0) and table.is_up(1)


def test_after_a_pass_it_takes_fall_failures_in_a_row():
    table = HealthTable(KEYS)
    assert run(table, 0, "+--+---") == [False] * 6 + [True]
    assert table.read(0) == (DOWN, 0, 3, 7)


def test_rise_passes_in_a_row_put_a_server_back():
    table = HealthTable(KEYS)
    run(table, 0, "-")
    assert run(table, 0, "+-++") == [False, False, False, True]
    assert table.read(0).state == UP and table.is_up(0)


def test_generation_changes_only_when_a_server_goes_up_or_down():
    table = HealthTable(KEYS)
    start = table.generation
    run(table, 0, "++++")
    assert table.generation == start
    run(table, 1, "-")
    assert table.generation == start + 1
    run(table, 1, "-+")
    assert table.generation == start + 1
    run(table, 1, "+")
    assert table.generation == start + 2


def test_a_server_listed_twice_has_one_slot():
    assert HealthTable([*KEYS, KEYS[0]]).slots == {KEYS[0]: 0, KEYS[1]: 1}


def test_carry_over_keeps_verdicts_of_servers_still_checked():
    old = HealthTable(KEYS)
    run(old, 0, "+---")
    run(old, 1, "++")
    new = HealthTable([("api", "10.0.0.3:80"), KEYS[1], KEYS[0]])
    seen = new.generation
    new.carry_over(old)
    assert new.read(2) == old.read(0) and not new.is_up(2)
    assert new.read(1) == old.read(1)
    assert new.read(0) == (UNPROVEN, 0, 0, 0)  # a new server starts up
    assert new.generation != seen  # workers re-read the states


def test_what_a_forked_process_records_the_parent_reads():
    table = HealthTable(KEYS)
    pid = os.fork()
    if pid == 0:  # the checker's side
        code = 1
        try:
            run(table, 1, "-")
            code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert not table.is_up(1) and table.read(1).checks == 1
    assert table.generation == 1
