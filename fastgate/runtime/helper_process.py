"""What the master's helper processes (health checker, ACME manager, DNS resolver) share."""

import asyncio
import os


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
