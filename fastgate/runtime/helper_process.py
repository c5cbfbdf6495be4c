"""What the master's helper processes (health checker, ACME manager, DNS resolver) share."""

import asyncio
import os
import signal


def name_process(name: bytes) -> None:
    """Show as ``name`` in ps, top and /proc/PID/comm (at most 15 bytes are kept; Linux; elsewhere a no-op)."""
    try:
        with open("/proc/self/comm", "wb") as f:
            f.write(name)
    except OSError:
        pass


async def until_orphaned(master_pid: int, interval_s: float) -> None:
    """Return once the master ``master_pid`` is gone (this process was re-parented)."""
    while os.getppid() == master_pid:
        await asyncio.sleep(interval_s)


async def run_until_stopped(loop, tasks: list, master_pid: int, orphan_check_s: float, on_orphaned,
                            reopen_logs) -> int:
    """Run a helper's ``tasks`` until SIGTERM, SIGINT or SIGQUIT, or until the master is gone
    (``on_orphaned()`` is called first); SIGUSR1 calls ``reopen_logs()``, SIGHUP is ignored (the
    master restarts its helpers on a reload). The tasks are cancelled; the exit status is 0."""
    stopped = loop.create_future()

    def stop() -> None:
        if not stopped.done():
            stopped.set_result(None)

    async def watch_master() -> None:
        await until_orphaned(master_pid, orphan_check_s)
        on_orphaned()
        stop()

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT):
        loop.add_signal_handler(sig, stop)
    loop.add_signal_handler(signal.SIGUSR1, reopen_logs)
    loop.add_signal_handler(signal.SIGHUP, lambda: None)
    tasks = [*tasks, loop.create_task(watch_master())]
    try:
        await stopped
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return 0
