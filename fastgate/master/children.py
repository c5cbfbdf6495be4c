"""Small helpers for the master's child processes (workers and the health checker)."""

import os


def kill(pid: int, sig: int) -> None:
    """Send ``sig`` to ``pid``; a process that is already gone is not an error."""
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def describe_exit(status: int) -> str:
    """A wait status in words: "exit code 1", "killed by signal 9"."""
    if os.WIFSIGNALED(status):
        return f"killed by signal {os.WTERMSIG(status)}"
    return f"exit code {os.waitstatus_to_exitcode(status)}"
