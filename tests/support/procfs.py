"""Process facts from /proc: children of a process, members of a process group, memory."""

import os


def _stat_fields(pid: int) -> list[str] | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            data = f.read()
    except OSError:
        return None
    # the command name is in parentheses and may contain spaces; fields follow the last ")"
    return data[data.rindex(")") + 2 :].split()


def _all_pids() -> list[int]:
    return [int(name) for name in os.listdir("/proc") if name.isdigit()]


def _alive(fields: list[str] | None) -> bool:
    return fields is not None and fields[0] not in ("Z", "X")


def name(pid: int) -> str | None:
    """The process's name (/proc/PID/comm), or None when it is gone."""
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return None


def children(pid: int) -> list[int]:
    """Live child processes of ``pid`` (state not zombie)."""
    found = []
    for candidate in _all_pids():
        fields = _stat_fields(candidate)
        if _alive(fields) and int(fields[1]) == pid:
            found.append(candidate)
    return sorted(found)


def group_members(pgid: int) -> list[int]:
    """Live processes whose process group is ``pgid``."""
    found = []
    for candidate in _all_pids():
        fields = _stat_fields(candidate)
        if _alive(fields) and int(fields[2]) == pgid:
            found.append(candidate)
    return sorted(found)


def memory_kib(pid: int) -> dict[str, int]:
    """VmRSS (resident now) and VmHWM (peak resident) of ``pid``, in KiB."""
    result = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                result[key] = int(value.split()[0])
    return result
