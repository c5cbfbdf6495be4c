"""The master's handle on the health checker process: start, respawn, switch on reload, stop.

Theory of operation
-------------------
The master calls these from its select loop; none of them blocks or waits
for the checker, and whatever the checker does (crash, hang, be killed) the
master only sees it exit and reaps it.

- ``start(loaded)``: fork a checker for the config, if any upstream has a
  health table.
- ``reaped(pid, status)``: the checker exited. If it was not asked to, a new
  one starts after a back-off that doubles (up to 10 s) while checkers keep
  dying within 2 s of their start. It goes on with the same shared table,
  so no verdict or count is lost.
- ``switch(loaded)``: a reload was promoted: the checker of the old config
  gets SIGTERM, and once it is gone (reaped, or SIGKILLed after a grace
  time) the verdicts of the servers both configs check are copied into the
  new table (load_config copied them already when the new config was
  loaded; this second copy adds what changed while the new workers were
  starting) and a checker for the new config starts. Old workers that are
  still draining keep the old table, which no longer changes.
- ``stop()``: at the end of a stop, after the workers are gone: SIGTERM the
  checker; True once no checker is left.
"""

import os
import signal
import time
from collections.abc import Callable

from fastgate.config.load import LoadedConfig
from fastgate.master.children import describe_exit, kill
from fastgate.observe.errorlog import log

_KILL_GRACE_S = 5.0
_MAX_BACKOFF_S = 10.0
_FAST_DEATH_S = 2.0


class CheckerProcess:
    def __init__(self, prepare_child: Callable[[], None]) -> None:
        self.prepare_child = prepare_child
        """Run in the forked child first: drop what belongs to the master (signal handlers, pipes, sockets)."""
        self.pid = 0
        """The running checker, or 0."""
        self.checking: LoadedConfig | None = None
        """The config whose table the running (or last) checker writes."""
        self.wanted: LoadedConfig | None = None
        """The config a checker should run for."""
        self.started = 0.0
        self.backoff_s = 0.0
        self.start_at = 0.0
        """When to start a checker (0.0: not scheduled)."""
        self.kill_at = 0.0
        """When to SIGKILL a checker that was asked to stop (0.0: not asked)."""
        self.stopping = False

    def start(self, loaded: LoadedConfig) -> None:
        self.wanted = loaded
        self._spawn()

    def switch(self, loaded: LoadedConfig) -> None:
        """Check ``loaded`` from now on instead of the running config."""
        self.wanted = loaded
        if self.pid:
            self._terminate()  # reaped() starts the new checker
        else:
            self.start_at = 0.0
            self._spawn()

    def reaped(self, pid: int, status: int) -> bool:
        """Whether ``pid`` was the checker (then it is dealt with)."""
        if not pid or pid != self.pid:
            return False
        self.pid = 0
        self.kill_at = 0.0
        if self.stopping:
            return True
        if self.checking is self.wanted:
            lived = time.monotonic() - self.started
            self.backoff_s = 0.0 if lived >= _FAST_DEATH_S else min(_MAX_BACKOFF_S, max(0.1, self.backoff_s * 2))
            self.start_at = time.monotonic() + self.backoff_s
            log.error("health checker %d exited (%s); respawning in %.1fs", pid, describe_exit(status), self.backoff_s)
        else:
            self._spawn()
        return True

    def timers(self, now: float) -> None:
        if self.start_at and self.start_at <= now and not self.stopping:
            self.start_at = 0.0
            self._spawn()
        if self.kill_at and self.kill_at <= now and self.pid:
            self.kill_at = 0.0
            kill(self.pid, signal.SIGKILL)

    def stop(self) -> bool:
        """Stop checking for good; True when no checker process is left."""
        self.stopping = True
        self.start_at = 0.0
        if self.pid and not self.kill_at:
            self._terminate()
        return not self.pid

    def signal(self, sig: int) -> None:
        if self.pid:
            kill(self.pid, sig)

    def _terminate(self) -> None:
        kill(self.pid, signal.SIGTERM)
        self.kill_at = time.monotonic() + _KILL_GRACE_S

    def _spawn(self) -> None:
        loaded = self.wanted
        if self.stopping or loaded is None or not loaded.health.slots:
            self.checking = loaded
            return
        if self.checking is not None and self.checking is not loaded:
            loaded.health.carry_over(self.checking.health)  # no checker writes either table now
        self.checking = loaded
        master_pid = os.getpid()
        try:
            pid = os.fork()
        except OSError as exc:
            self.backoff_s = _MAX_BACKOFF_S
            self.start_at = time.monotonic() + self.backoff_s
            log.error("cannot start the health checker: %s; trying again in %.0fs", exc, self.backoff_s)
            return
        if pid == 0:  # the checker
            code = 1
            try:
                self.prepare_child()
                from fastgate.health.checker import run_checker

                code = run_checker(loaded, master_pid)
            except BaseException:
                log.exception("health checker failed")
            finally:
                os._exit(code)
        self.pid = pid
        self.started = time.monotonic()

