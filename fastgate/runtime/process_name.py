"""The name a process shows in ps, top and /proc/PID/comm."""


def name_process(name: bytes) -> None:
    """Show as ``name`` (at most 15 bytes are kept; Linux; elsewhere a no-op)."""
    try:
        with open("/proc/self/comm", "wb") as f:
            f.write(name)
    except OSError:
        pass
