"""Start and stop the processes of a benchmark: ports, CPU pinning, readiness.

Every process is started in its own session (a Ctrl-C in the terminal reaches
only the harness, which then stops everything in order) and is stopped by PID:
SIGTERM, then SIGKILL after a grace period, and any child it leaves behind
(a worker whose master died) is killed by its PID as well.
"""

import os
import resource
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from bench import procfs

STOP_GRACE_S = 10.0


class ProcError(Exception):
    """A process did not start or did not stay up; the message says why and ends with its log."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that the OS says is free right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_workdir(prefix: str) -> Path:
    """A new temp directory for the servers' files; the caller removes it."""
    workdir = Path(tempfile.mkdtemp(prefix=prefix))
    workdir.chmod(0o755)  # nginx workers run as an unprivileged user when started by root
    return workdir


def raise_fd_limit() -> None:
    """Raise this process's soft RLIMIT_NOFILE to its hard limit; the servers inherit it."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def fd_limit() -> int:
    """The open-file limit a server started now gets; configs size their connection caps from it."""
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


@dataclass(frozen=True)
class Pinning:
    """Which CPUs the proxy under test gets and which the load (wrk, origin, clients) gets."""

    proxy: tuple[int, ...]
    load: tuple[int, ...]

    @staticmethod
    def split(enabled: bool) -> "Pinning | None":
        """First half of the usable CPUs for the proxy, the rest for the load.

        None (nothing pinned) when disabled or with fewer than two CPUs.
        """
        cpus = sorted(os.sched_getaffinity(0))
        if not enabled or len(cpus) < 2:
            return None
        half = len(cpus) // 2
        return Pinning(tuple(cpus[:half]), tuple(cpus[half:]))

    def describe(self) -> dict:
        return {"proxy_cpus": cpu_list(self.proxy), "load_cpus": cpu_list(self.load)}


def cpu_list(cpus: tuple[int, ...] | None) -> str | None:
    return ",".join(map(str, cpus)) if cpus else None


def pinned(argv: list[str], cpus: tuple[int, ...] | None) -> list[str]:
    """``argv`` run under ``taskset -c cpus`` (taskset execs it: the PID stays the same)."""
    return ["taskset", "-c", cpu_list(cpus), *argv] if cpus else argv


class Proc:
    """A process the harness started and must stop; use it as a context manager."""

    def __init__(self, name: str, argv: list[str], log_path: Path, cpus: tuple[int, ...] | None = None):
        self.name = name
        self.log_path = log_path
        # Append mode: nginx writes its error log to the same file through its own descriptor.
        self._log = open(log_path, "ab")
        self._popen = subprocess.Popen(
            pinned(argv, cpus), stdin=subprocess.DEVNULL, stdout=self._log,
            stderr=subprocess.STDOUT, start_new_session=True,
        )
        self.pid = self._popen.pid
        # (pid, start time) of every child seen, so stop() can kill leftovers safely.
        self._children: set[tuple[int, int]] = set()

    def alive(self) -> bool:
        return self._popen.poll() is None

    def wait(self, timeout_s: float) -> int:
        """Its exit status once it exits; subprocess.TimeoutExpired after ``timeout_s``."""
        return self._popen.wait(timeout_s)

    def children(self) -> list[int]:
        pids = procfs.children(self.pid)
        for pid in pids:
            started = procfs.start_time(pid)
            if started is not None:
                self._children.add((pid, started))
        return pids

    def wait_for_port(self, port: int, timeout_s: float) -> None:
        """Return once 127.0.0.1:port accepts a connection; ProcError if the
        process exits first or the time runs out."""
        deadline = time.monotonic() + timeout_s
        while True:
            if not self.alive():
                raise ProcError(f"{self.name} exited with status {self._popen.returncode}\n{self.log_tail()}")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise ProcError(f"{self.name} not listening on port {port} after {timeout_s:.0f} s\n{self.log_tail()}")
                time.sleep(0.05)

    def wait_for_children(self, count: int, timeout_s: float) -> list[int]:
        """The process's children once there are ``count`` of them (its workers)."""
        deadline = time.monotonic() + timeout_s
        while True:
            pids = self.children()
            if len(pids) == count:
                return pids
            if not self.alive() or time.monotonic() > deadline:
                raise ProcError(f"{self.name} has {len(pids)} worker processes, expected {count}\n{self.log_tail()}")
            time.sleep(0.05)

    def log_tail(self, lines: int = 15) -> str:
        if not self._log.closed:
            self._log.flush()
        text = self.log_path.read_text(errors="replace").splitlines()[-lines:]
        return "\n".join(f"  | {line}" for line in text) or "  | (no output)"

    def stop(self) -> None:
        self.children()
        if self.alive():
            os.kill(self.pid, signal.SIGTERM)
            try:
                self._popen.wait(STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                os.kill(self.pid, signal.SIGKILL)
                self._popen.wait()
        # Workers normally exit with their master; give stragglers a moment, then kill them.
        deadline = time.monotonic() + 2.0
        while (left := [pid for pid, started in self._children if procfs.start_time(pid) == started]):
            if time.monotonic() > deadline:
                for pid in left:
                    os.kill(pid, signal.SIGKILL)
                break
            time.sleep(0.05)
        self._log.close()

    def __enter__(self) -> "Proc":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def start_listening(name: str, argv: list[str], log_path: Path, cpus: tuple[int, ...] | None, port: int) -> Proc:
    """Start a server and wait until it listens on ``port``; it is stopped if it does not."""
    proc = Proc(name, argv, log_path, cpus)
    try:
        proc.wait_for_port(port, 20.0)
    except BaseException:
        proc.stop()
        raise
    return proc
