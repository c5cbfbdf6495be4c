"""Read what the benchmark measures about a process from /proc (Linux only)."""

import os

CLOCK_TICKS_PER_S = os.sysconf("SC_CLK_TCK")


def _stat_fields(pid: int) -> list[str]:
    """Fields of /proc/PID/stat after the command name; index 0 is field 3 (state)."""
    with open(f"/proc/{pid}/stat", "rb") as f:
        raw = f.read()
    # The command name is in parentheses and may itself hold spaces or ")".
    return raw[raw.rindex(b")") + 2 :].decode().split()


def start_time(pid: int) -> int | None:
    """When the process started (clock ticks after boot), or None if it has exited.

    A PID with the same start time is the same process; this guards against
    signalling a PID the kernel has given to someone else.
    """
    try:
        fields = _stat_fields(pid)
    except (FileNotFoundError, ProcessLookupError):
        return None
    return None if fields[0] == "Z" else int(fields[19])


def children(pid: int) -> list[int]:
    """PIDs of the live processes whose parent is ``pid``, ascending."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fields = _stat_fields(int(entry))
        except (FileNotFoundError, ProcessLookupError):
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            found.append(int(entry))
    return sorted(found)


def cpu_us(pid: int) -> tuple[float, float]:
    """User and system CPU time the process has used so far, in microseconds.

    For a multi-threaded process (HAProxy) this covers all of its threads.
    """
    fields = _stat_fields(pid)
    scale = 1e6 / CLOCK_TICKS_PER_S
    return int(fields[11]) * scale, int(fields[12]) * scale


def rss_kib(pid: int) -> int:
    """Resident set size of the process in KiB."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise ValueError(f"no VmRSS in /proc/{pid}/status")
