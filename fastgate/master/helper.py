"""The master's handle on one helper process (the health checker, the ACME certificate manager):
start, respawn, switch on reload, stop.

Theory of operation
-------------------
A helper does work that must run once per gateway, not once per worker. What
it does is its role's (``HelperRole``); how it lives is the same for every
helper and is kept here. The master calls these from its select loop; none
of them blocks or waits for the helper, and whatever the helper does (crash,
hang, be killed) the master only sees it exit and reaps it.

- ``start(loaded)``: fork a helper for the config, if the role has work in it.
- ``reaped(pid, status)``: the helper exited. If it was not asked to, a new
  one starts after a back-off that doubles (up to 10 s) while helpers keep
  dying within 2 s of their start.
- ``switch(loaded)``: a reload was promoted. When the role says the new config
  gives it the same work (``same_work``) the running helper goes on;
  otherwise it gets SIGTERM, and once it is gone (reaped, or SIGKILLed after
  a grace time) the role hands over from the old config to the new one
  (``handover``) and a helper for the new config starts.
- ``stop()``: at the end of a stop, after the workers are gone: SIGTERM the
  helper; True once no helper is left.
"""

import os
import signal
import time
from collections.abc import Callable
from typing import Protocol

from fastgate.config.load import LoadedConfig
from fastgate.master.children import describe_exit, kill
from fastgate.observe.errorlog import log

_KILL_GRACE_S = 5.0
_MAX_BACKOFF_S = 10.0
_FAST_DEATH_S = 2.0


class HelperRole(Protocol):
    """What one kind of helper does; the process around it is HelperProcess's."""

    name: str
    """How the error log calls it ("health checker")."""

    def needed(self, loaded: LoadedConfig) -> bool:
        """Whether ``loaded`` gives a helper any work (no process runs otherwise)."""

    def same_work(self, running: LoadedConfig, wanted: LoadedConfig) -> bool:
        """Whether a helper running for ``running`` may go on unchanged for ``wanted``."""

    def handover(self, previous: LoadedConfig, loaded: LoadedConfig) -> None:
        """In the master, no helper running: carry state from ``previous``'s helper to ``loaded``'s."""

    def run(self, loaded: LoadedConfig, master_pid: int) -> int:
        """The helper process's main, in the forked child; returns its exit code."""


class HelperProcess:
    def __init__(self, role: HelperRole, prepare_child: Callable[[], None]) -> None:
        self.role = role
        self.prepare_child = prepare_child
        """Run in the forked child first: drop what belongs to the master (signal handlers, pipes, sockets)."""
        self.pid = 0
        """The running helper, or 0."""
        self.running: LoadedConfig | None = None
        """The config the running (or last) helper works for."""
        self.wanted: LoadedConfig | None = None
        """The config a helper should work for."""
        self.started = 0.0
        self.backoff_s = 0.0
        self.start_at = 0.0
        """When to start a helper (0.0: not scheduled)."""
        self.kill_at = 0.0
        """When to SIGKILL a helper that was asked to stop (0.0: not asked)."""
        self.stopping = False

    def start(self, loaded: LoadedConfig) -> None:
        self.wanted = loaded
        self._spawn()

    def switch(self, loaded: LoadedConfig) -> None:
        """Work for ``loaded`` from now on instead of the running config."""
        running = self.running
        self.wanted = loaded
        if self.pid and running is not None and self.role.same_work(running, loaded):
            self.running = loaded
        elif self.pid:
            self._terminate()  # reaped() starts the new helper
        else:
            self.start_at = 0.0
            self._spawn()

    def reaped(self, pid: int, status: int) -> bool:
        """Whether ``pid`` was the helper (then it is dealt with)."""
        if not pid or pid != self.pid:
            return False
        self.pid = 0
        self.kill_at = 0.0
        if self.stopping:
            return True
        if self.running is self.wanted:
            lived = time.monotonic() - self.started
            self.backoff_s = 0.0 if lived >= _FAST_DEATH_S else min(_MAX_BACKOFF_S, max(0.1, self.backoff_s * 2))
            self.start_at = time.monotonic() + self.backoff_s
            log.error("%s %d exited (%s); respawning in %.1fs", self.role.name, pid, describe_exit(status),
                      self.backoff_s)
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
        """Stop for good; True when no helper process is left."""
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
        if self.stopping or loaded is None or not self.role.needed(loaded):
            self.running = loaded
            return
        if self.running is not None and self.running is not loaded:
            self.role.handover(self.running, loaded)  # no helper works for either config now
        self.running = loaded
        master_pid = os.getpid()
        try:
            pid = os.fork()
        except OSError as exc:
            self.backoff_s = _MAX_BACKOFF_S
            self.start_at = time.monotonic() + self.backoff_s
            log.error("cannot start the %s: %s; trying again in %.0fs", self.role.name, exc, self.backoff_s)
            return
        if pid == 0:  # the helper
            code = 1
            try:
                self.prepare_child()
                code = self.role.run(loaded, master_pid)
            except BaseException:
                log.exception("%s failed", self.role.name)
            finally:
                os._exit(code)
        self.pid = pid
        self.started = time.monotonic()
