"""The fastgate process under test: config in a temporary directory, start, readiness, stop.

``Gateway`` writes a complete config (the test gives only what it cares
about; listener, pid file, logs and a readiness route are added), runs
``fastgate -c FILE`` in its own process group, waits until the listener
answers the readiness route, and stops the whole process group when the
test ends, also when it failed.
"""

import os
from signal import SIGKILL, SIGTERM
import shutil
import subprocess
import sys
import time
from pathlib import Path

import h11

from tests.support import procfs
from tests.support.ports import free_port
from tests.support.rawhttp import RawConnection
from tests.support.toml_writer import dumps

REPO = Path(__file__).resolve().parents[2]
READY_PATH = "/__fastgate_ready"
READY_BODY = "ready"
CHECKER_NAME = "fastgate-health"
"""The health checker's process name (fastgate/health/checker.py PROCESS_NAME)."""
ACME_NAME = "fastgate-acme"
"""The ACME manager's process name (fastgate/acme/manager.py PROCESS_NAME)."""
DISCOVERY_NAME = "fastgate-dns"
"""The DNS discovery helper's process name (fastgate/discovery/follower.py PROCESS_NAME)."""


def fastgate_command() -> list[str]:
    """The installed ``fastgate`` script next to this Python, else ``python -m fastgate``."""
    script = Path(sys.executable).with_name("fastgate")
    if script.exists():
        return [str(script)]
    found = shutil.which("fastgate")
    return [found] if found else [sys.executable, "-m", "fastgate"]


def fastgate_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    return env


def run_cli(*args: str, timeout_s: float = 30.0) -> subprocess.CompletedProcess:
    """Run ``fastgate ARGS`` to completion; stdout and stderr are captured as text."""
    return subprocess.run([*fastgate_command(), *args], capture_output=True, text=True,
                          timeout=timeout_s, env=fastgate_env(), cwd=REPO)


class GatewayExited(Exception):
    """The gateway process ended while it was expected to run."""


class Gateway:
    def __init__(self, directory: Path, config: dict, workers: int | str = 1,
                 args: tuple[str, ...] = ()) -> None:
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        self.config_path = self.dir / "gate.conf"
        self.pid_file = self.dir / "fastgate.pid"
        self.error_log = self.dir / "error.log"
        self.console_log = self.dir / "console.log"
        self.workers = workers
        self.args = tuple(args)
        self.config = config
        self.port = 0
        self.admin_port = 0
        """Where the admin listener answers (``admin.address``)."""
        self.proc: subprocess.Popen | None = None

    # -- config -----------------------------------------------------------

    def full_config(self, config: dict) -> dict:
        """``config`` completed with what every test gateway needs."""
        server = {"workers": self.workers, "pid_file": str(self.pid_file),
                  "error_log": str(self.error_log), "log_level": "info", "drain_timeout": "5s"}
        server.update(config.get("server", {}))
        # keep-alive outlasts every client wait, so a close a test waits for is never the idle timeout
        http = {"header_timeout": "2s", "body_timeout": "5s", "send_timeout": "10s",
                "keepalive_timeout": "60s"}
        http.update(config.get("http", {}))
        ready = {"name": "readiness", "path": READY_PATH,
                 "respond": {"status": 200, "body": READY_BODY}}
        admin = {"address": f"127.0.0.1:{self.admin_port}"}
        admin.update(config.get("admin", {}))
        return {
            **config,  # other tables (e.g. ratelimit) pass through as given
            "admin": admin,
            "server": server,
            "http": http,
            "listeners": config.get("listeners", [{"address": f"127.0.0.1:{self.port}"}]),
            "upstreams": config.get("upstreams", []),
            "routes": [*config.get("routes", []), ready],
        }

    def write_config(self, config: dict | None = None, raw: str | None = None) -> None:
        """Write ``config`` (completed) or the ``raw`` text to the config file."""
        if config is not None:
            self.config = config
        text = raw if raw is not None else dumps(self.full_config(self.config))
        tmp = self.config_path.with_suffix(".tmp")
        tmp.write_text(text)
        tmp.replace(self.config_path)

    # -- life cycle -------------------------------------------------------

    def start(self) -> "Gateway":
        for attempt in range(3):
            self.port = free_port()
            self.admin_port = free_port()
            self.write_config()
            self.spawn()
            try:
                self.wait_ready()
                return self
            except GatewayExited:
                if "in use" not in self.log_text() or attempt == 2:
                    raise
                self.stop()
        raise AssertionError("unreachable")

    def spawn(self) -> None:
        with open(self.console_log, "ab") as console:
            self.proc = subprocess.Popen(
                [*fastgate_command(), "-c", str(self.config_path), *self.args],
                stdin=subprocess.DEVNULL, stdout=console, stderr=subprocess.STDOUT,
                start_new_session=True, env=fastgate_env(), cwd=self.dir,
            )

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def wait_ready(self, timeout_s: float = 30.0) -> None:
        """Wait until the listener answers the readiness route with 200."""
        deadline = time.monotonic() + timeout_s
        while True:
            if not self.alive():
                raise GatewayExited(f"fastgate exited with {self.proc.returncode} before it was ready:\n"
                                    f"{self.log_text()}")
            if self.answers_ready():
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"fastgate was not ready after {timeout_s}s:\n{self.log_text()}")
            time.sleep(0.05)

    def answers_ready(self) -> bool:
        try:
            with RawConnection(self.port, timeout_s=2) as conn:
                conn.send(f"GET {READY_PATH} HTTP/1.1\r\nHost: ready\r\n\r\n".encode())
                response = conn.read_response()
        except (OSError, h11.ProtocolError):
            return False
        return response.status == 200 and response.body == READY_BODY.encode()

    def signal(self, sig: int) -> None:
        os.kill(self.pid, sig)

    def wait_exit(self, timeout_s: float = 20.0) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout_s)

    def stop(self, sig: int = SIGTERM, timeout_s: float = 10.0) -> int | None:
        """Stop the master with ``sig``, then SIGKILL what is left of its process group."""
        if self.proc is None:
            return None
        code = None
        if self.proc.poll() is None:
            try:
                self.proc.send_signal(sig)
                code = self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(self.proc.pid, SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        if code is None:
            code = self.proc.wait(10)
        return code

    def group_pids(self) -> list[int]:
        """Processes still alive in the gateway's process group (the master and its workers)."""
        return procfs.group_members(self.pid)

    # -- helpers for tests ------------------------------------------------

    def url(self, path: str = "/") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def worker_pids(self) -> set[int]:
        return {pid for pid in procfs.children(self.pid) if procfs.name(pid) not in (CHECKER_NAME, ACME_NAME, DISCOVERY_NAME)}

    def checker_pids(self) -> set[int]:
        """The master's health checker processes (one while any upstream has health checks)."""
        return {pid for pid in procfs.children(self.pid) if procfs.name(pid) == CHECKER_NAME}

    def cli(self, *args: str) -> subprocess.CompletedProcess:
        """``fastgate ARGS -c <this config>``."""
        return run_cli(*args, "-c", str(self.config_path))

    def log_text(self) -> str:
        parts = []
        for path in (self.error_log, self.console_log):
            if path.exists():
                parts.append(f"--- {path.name} ---\n{path.read_text(errors='replace')}")
        return "\n".join(parts)

    def log_tail(self, lines: int = 60) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])


class GatewayFactory:
    """Starts gateways for a test (or a module) and stops every one of them at the end."""

    def __init__(self, base_dir: Path) -> None:
        self.base_dir = base_dir
        self.started: list[Gateway] = []

    def start(self, config: dict, workers: int | str = 1, args: tuple[str, ...] = ()) -> Gateway:
        gateway = Gateway(self.base_dir / f"gw{len(self.started)}", config, workers, args)
        self.started.append(gateway)
        return gateway.start()

    def close(self) -> None:
        for gateway in self.started:
            gateway.stop()
            if gateway.proc is not None:
                print(f"\n=== fastgate {gateway.dir} (exit {gateway.proc.returncode}) ===\n{gateway.log_tail()}")
