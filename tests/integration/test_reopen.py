"""Log reopening (SIGUSR1, `fastgate -s reopen`): after a log rotation the master writes a fresh file."""

import signal

import pytest

from tests.support.wait import wait_until


@pytest.mark.parametrize("how", ["SIGUSR1", "-s reopen"])
def test_reopen_starts_a_new_error_log(gateways, how):
    gw = gateways.start({"routes": [{"name": "hello", "path": "/hello", "respond": {"body": "hello"}}]})
    wait_until(lambda: gw.error_log.exists() and gw.error_log.stat().st_size > 0, "the master writes its log")
    rotated = gw.error_log.with_name("error.log.1")
    gw.error_log.rename(rotated)

    if how == "SIGUSR1":
        gw.signal(signal.SIGUSR1)
    else:
        result = gw.cli("-s", "reopen")
        assert result.returncode == 0, result.stdout + result.stderr
    wait_until(gw.error_log.exists, "the log file is created again")

    gw.signal(signal.SIGHUP)  # a reload logs at info level
    wait_until(lambda: gw.error_log.stat().st_size > 0, "the reload is logged to the new file")
    assert gw.alive()
