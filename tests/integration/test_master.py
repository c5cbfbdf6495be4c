"""The master process: how many workers it runs, and the pid file `fastgate -s` relies on."""

import os

import pytest

from tests.support.wait import wait_until

HELLO = {"routes": [{"name": "hello", "path": "/hello", "respond": {"body": "hello"}}]}


@pytest.mark.parametrize("workers, args, expected", [
    pytest.param(2, (), 2, id="from-config"),
    pytest.param(1, ("--workers", "3"), 3, id="command-line-override"),
    pytest.param("auto", (), os.cpu_count(), id="auto-one-per-cpu"),
])
def test_master_runs_the_configured_number_of_workers(gateways, workers, args, expected):
    gw = gateways.start(HELLO, workers=workers, args=args)
    wait_until(lambda: len(gw.worker_pids()) == expected,
               f"{expected} workers run (now {gw.worker_pids()})")


def test_pid_file_names_the_master(gateways):
    gw = gateways.start(HELLO)
    assert int(gw.pid_file.read_text().strip()) == gw.pid
