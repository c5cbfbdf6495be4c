"""When a worker gives freed memory back (fastgate/master/memory.py): after a crowd of connections left."""

import platform

import pytest

from fastgate.master.memory import TRIM_AFTER_CLOSED, MemoryGiveBack, malloc_trim


class Trims:
    def __init__(self) -> None:
        self.calls: list[int] = []

    def __call__(self, pad: int) -> int:
        self.calls.append(pad)
        return 1


def test_trims_once_when_a_crowd_of_connections_left():
    trim = Trims()
    memory = MemoryGiveBack(trim)
    for count in (0, 100, 500, 480, 437):
        memory.on_tick(count)
    assert trim.calls == []  # 63 gone
    memory.on_tick(500 - TRIM_AFTER_CLOSED)
    assert trim.calls == [0]
    for count in (436, 400, 437 - TRIM_AFTER_CLOSED + 1):
        memory.on_tick(count)
    assert trim.calls == [0], "the count since the last trim is what counts"
    memory.on_tick(0)
    assert trim.calls == [0, 0]


def test_a_steady_count_of_connections_never_trims():
    trim = Trims()
    memory = MemoryGiveBack(trim)
    for _ in range(100):
        for count in (300, 250, 300):
            memory.on_tick(count)
    assert trim.calls == []


def test_without_malloc_trim_nothing_happens():
    memory = MemoryGiveBack(None)
    memory.on_tick(1000)
    memory.on_tick(0)
    assert memory.trims == 0


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="malloc_trim is glibc's")
def test_glibc_malloc_trim_is_found_and_runs():
    trim = malloc_trim()
    assert trim is not None
    assert trim(0) in (0, 1)  # 1: memory was given back, 0: there was none to give
