"""The master process: sockets, worker generations, signals, reload.

Theory of operation
-------------------
The master loads the config, binds the listener slot sockets (sockets.py),
writes the pid file and forks one generation of workers that inherit the
sockets. It then sleeps in ``select`` on a self-pipe that signal handlers
write to (``signal.set_wakeup_fd``) and on the workers' ready pipes.

- SIGCHLD: reap. A worker of the current generation that exits unasked is
  respawned after a back-off that doubles (up to 10 s) while workers keep
  dying within 2 s of their start.
- SIGHUP: reload. The new config is loaded and checked, certificate files
  read again and TLS contexts made (here, so the new generation's workers
  share one set of session ticket keys); if it is bad (a certificate file
  missing, say) the error is logged and nothing else happens: the old
  workers go on with the old certificates. Otherwise a new generation is
  forked on the same sockets (new listeners get new sockets); once every new
  worker has said it is ready, the old generation gets SIGQUIT (stop
  accepting, finish in-flight requests within drain_timeout). Connections
  waiting in an accept queue stay in the kernel's queue of a socket that
  both generations share, so none is refused or reset. If the new workers
  are not ready within 10 s, they are killed and the old ones go on.
- SIGQUIT: graceful stop (workers drain); SIGTERM/SIGINT: fast stop;
  SIGUSR1: reopen logs (master and workers).

Work done once per gateway runs in helper children (master/helper.py):
the health checker (health/process.py) and the DNS discovery helper
(discovery/process.py), started with the first generation, and the ACME
manager (acme/process.py), started once the first generation serves (it
needs the workers to answer the CA's HTTP-01 requests). All are respawned
when they die, switched to the new config when a reload is promoted, and
stopped last (after the workers, on a graceful stop).

Reload requests: the ACME manager (after it stored a new certificate) and
the config watcher (master/watch.py, a thread, with ``[server] watch``) write
a byte to the master's request pipe. A request is remembered and served as
soon as no reload is in progress, so one that arrives during another reload
is not lost, and several become one reload.
"""

import os
import select
import signal
import time
from dataclasses import dataclass, field

from fastgate.config.errors import ConfigError
from fastgate.config.load import load_config
from fastgate.config.load import LoadedConfig, parse_address
from fastgate.config.schema import Listener
from fastgate.acme.process import AcmeManager
from fastgate.discovery.process import ServerDiscovery
from fastgate.health.process import HealthChecker
from fastgate.master.helper import HelperProcess
from fastgate.master.watch import ConfigWatcher
from fastgate.master.children import describe_exit, kill
from fastgate.master.notify import monotonic_usec, sd_notify
from fastgate.master.sockets import ListenerSockets
from fastgate.observe import errorlog
from fastgate.observe.errorlog import log
from fastgate.observe.instance import InstanceMetrics
from fastgate.observe.shm import READY, STOPPING

_READY_TIMEOUT_S = 10.0
_KILL_GRACE_S = 5.0
_MAX_BACKOFF_S = 10.0
_FAST_DEATH_S = 2.0
_ADMIN_BACKLOG = 128
RELOAD_FOR_CERTIFICATE = b"c"
RELOAD_FOR_CHANGE = b"w"
_RELOAD_REASONS = {RELOAD_FOR_CERTIFICATE[0]: "a new ACME certificate", RELOAD_FOR_CHANGE[0]: "changed files"}
_SIGNALS = (signal.SIGCHLD, signal.SIGHUP, signal.SIGTERM, signal.SIGINT, signal.SIGQUIT, signal.SIGUSR1)


@dataclass
class _Worker:
    pid: int
    index: int
    generation: int
    ready_fd: int
    started: float
    seat: int = 0
    """Its seat in the shared metrics region (0: none)."""
    ready: bool = False
    stopping: bool = False
    kill_at: float = 0.0


@dataclass
class _Slot:
    """Respawn bookkeeping for one worker index of the current generation."""

    backoff_s: float = 0.0
    respawn_at: float = 0.0


@dataclass
class _Generation:
    number: int
    loaded: LoadedConfig
    workers: int
    slots: dict[int, _Slot] = field(default_factory=dict)


class Master:
    def __init__(self, config_path: str, workers_override: int | None) -> None:
        self.config_path = config_path
        self.workers_override = workers_override
        self.listeners: dict[tuple[str, int], ListenerSockets] = {}
        self.workers: dict[int, _Worker] = {}
        self.current: _Generation | None = None
        self.pending: _Generation | None = None
        """A generation started by a reload that is not ready yet."""
        self.pending_deadline = 0.0
        self.signals: list[int] = []
        self.stopping = False
        self.fast_stop = False
        self.pid_file = ""
        self.metrics: InstanceMetrics | None = None
        self._wake_r = self._wake_w = -1
        self._request_r, self._request_w = os.pipe()
        """Reload requests from the ACME manager and the config watcher (one byte each: the reason)."""
        os.set_blocking(self._request_r, False)
        self.reload_wanted = ""
        """Why a requested reload is to run as soon as none is in progress ("": none requested)."""
        self.checker = HelperProcess(HealthChecker(), self._forget_in_checker)
        self.discovery = HelperProcess(ServerDiscovery(), self._forget_in_checker)
        self.acme = HelperProcess(AcmeManager(self._request_certificate_reload), self._forget_in_acme)
        self.watcher = ConfigWatcher(self._request_change_reload)

    # -- life cycle ------------------------------------------------------------
    def run(self, loaded: LoadedConfig) -> int:
        config = loaded.config
        errorlog.setup(config.server.error_log, config.server.log_level)
        self.metrics = InstanceMetrics(self.workers_override or _worker_count(loaded))
        self._bind(loaded)
        self.pid_file = config.server.pid_file
        with open(self.pid_file, "w") as f:
            f.write(f"{os.getpid()}\n")
        self._install_signals()
        try:
            self.current = self._start_generation(loaded, 1)
            self.checker.start(loaded)
            self.discovery.start(loaded)
            self.watcher.follow(loaded)
            log.info("fastgate %s started: %d workers, pid %d", _version(), self.current.workers, os.getpid())
            return self._loop()
        finally:
            self._cleanup()

    def _loop(self) -> int:
        announced = False
        while True:
            if not announced and self.current and self._all_ready(self.current):
                announced = True
                self.metrics.set_state(READY)
                sd_notify("READY=1", f"MAINPID={os.getpid()}", "STATUS=serving")
                if self.acme.wanted is None:
                    self.acme.start(self.current.loaded)
            helpers = (self.checker, self.discovery, self.acme)
            if self.stopping and not self.workers and all([helper.stop() for helper in helpers]):
                return 0
            readable = self._wait()
            for fd in readable:
                if fd == self._wake_r:
                    _drain_pipe(fd)
                elif fd == self._request_r:
                    self._reload_requested()
                else:
                    self._ready_byte(fd)
            self._handle_signals()
            if self.reload_wanted and self.pending is None and self.current is not None:
                log.info("reloading for %s", self.reload_wanted)
                self.reload_wanted = ""
                self._reload()
            self._timers()

    def _wait(self) -> list[int]:
        fds = [self._wake_r, self._request_r] + [w.ready_fd for w in self.workers.values() if w.ready_fd >= 0]
        timeout = 0.5
        try:
            readable, _, _ = select.select(fds, [], [], timeout)
        except InterruptedError:
            return []
        return readable

    # -- signals ---------------------------------------------------------------
    def _install_signals(self) -> None:
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        signal.set_wakeup_fd(self._wake_w, warn_on_full_buffer=False)
        for sig in _SIGNALS:
            signal.signal(sig, self._on_signal)

    def _on_signal(self, signum: int, frame) -> None:
        self.signals.append(signum)

    def _handle_signals(self) -> None:
        while self.signals:
            sig = self.signals.pop(0)
            if sig == signal.SIGCHLD:
                self._reap()
            elif sig == signal.SIGHUP:
                self._reload()
            elif sig == signal.SIGQUIT:
                self._stop(graceful=True)
            elif sig in (signal.SIGTERM, signal.SIGINT):
                self._stop(graceful=False)
            elif sig == signal.SIGUSR1:
                errorlog.reopen()
                self._signal_workers(signal.SIGUSR1, lambda w: True)
                self.checker.signal(signal.SIGUSR1)
                self.discovery.signal(signal.SIGUSR1)
                self.acme.signal(signal.SIGUSR1)
                log.info("logs reopened")

    # -- workers -------------------------------------------------------------
    def _start_generation(self, loaded: LoadedConfig, number: int) -> _Generation:
        count = self.workers_override or _worker_count(loaded)
        for group in self.listeners.values():
            group.ensure_slots(count)
        generation = _Generation(number, loaded, count)
        for index in range(count):
            generation.slots[index] = _Slot()
            self._spawn(generation, index)
        return generation

    def _spawn(self, generation: _Generation, index: int) -> None:
        sockets = [
            (spec, sock)  # each slot socket with its listener compiled (TLS contexts made here, before fork)
            for spec, key in zip(generation.loaded.listeners, _listener_keys(generation.loaded))
            for sock in self.listeners[key].slots_of(index, generation.workers)
        ]
        admin = _admin_key(generation.loaded)
        admin_sockets = self.listeners[admin].slots_of(index, generation.workers) if admin else []
        seat = self.metrics.seat_for(index, generation.number)
        ready_r, ready_w = os.pipe()
        pid = os.fork()
        if pid == 0:  # the worker
            code = 1
            try:
                os.close(ready_r)
                self._forget_in_child()
                from fastgate.master.worker import run_worker

                code = run_worker(generation.loaded, sockets, admin_sockets, ready_w, self.metrics.region, seat)
            except BaseException:
                log.exception("worker failed")
            finally:
                os._exit(code)
        os.close(ready_w)
        self.workers[pid] = _Worker(pid, index, generation.number, ready_r, time.monotonic(), seat)

    def _forget_in_child(self, keep_request_pipe: bool = False) -> None:
        """In a new worker: drop the master's signal handling and pipes (an ACME manager keeps the
        request pipe's writing end)."""
        signal.set_wakeup_fd(-1)
        for sig in _SIGNALS:
            signal.signal(sig, signal.SIG_DFL)
        os.close(self._wake_r)
        os.close(self._wake_w)
        os.close(self._request_r)
        if not keep_request_pipe:
            os.close(self._request_w)
        for worker in self.workers.values():
            if worker.ready_fd >= 0:
                os.close(worker.ready_fd)

    def _forget_in_checker(self) -> None:
        """In a new health checker or discovery helper: what a worker drops, and the listening sockets too."""
        self._forget_in_child()
        for listener in self.listeners.values():
            listener.close()

    def _forget_in_acme(self) -> None:
        """In a new ACME manager: what the checker drops, but not the way to ask for a reload."""
        self._forget_in_child(keep_request_pipe=True)
        for listener in self.listeners.values():
            listener.close()

    # -- reload requests -------------------------------------------------------
    def _request_certificate_reload(self) -> None:
        """In the ACME manager: a new certificate is stored."""
        os.write(self._request_w, RELOAD_FOR_CERTIFICATE)

    def _request_change_reload(self) -> None:
        """In the watcher thread: a watched file changed."""
        os.write(self._request_w, RELOAD_FOR_CHANGE)

    def _reload_requested(self) -> None:
        try:
            requests = os.read(self._request_r, 512)
        except BlockingIOError:
            return
        reasons = sorted({_RELOAD_REASONS.get(byte, "a request") for byte in requests})
        if reasons and not self.stopping:
            self.reload_wanted = " and ".join(reasons)

    def _ready_byte(self, fd: int) -> None:
        for worker in self.workers.values():
            if worker.ready_fd == fd:
                try:
                    got = os.read(fd, 1)
                except OSError:
                    got = b""
                os.close(fd)
                worker.ready_fd = -1
                worker.ready = got == b"1"
                if worker.ready and self.pending and worker.generation == self.pending.number:
                    if self._all_ready(self.pending):
                        self._promote_pending()
                return

    def _all_ready(self, generation: _Generation) -> bool:
        members = [w for w in self.workers.values() if w.generation == generation.number and not w.stopping]
        return len(members) == generation.workers and all(w.ready for w in members)

    def _reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            if self.checker.reaped(pid, status) or self.discovery.reaped(pid, status) or self.acme.reaped(pid, status):
                continue
            worker = self.workers.pop(pid, None)
            if worker is None:
                continue
            if worker.ready_fd >= 0:
                os.close(worker.ready_fd)
            current = self.current
            respawn = (not worker.stopping and not self.stopping and current is not None
                       and worker.generation == current.number)
            self.metrics.worker_exited(worker.seat, restarted=respawn)
            if worker.stopping or self.stopping:
                continue
            if respawn:
                self._schedule_respawn(current, worker, status)
            elif self.pending is not None and worker.generation == self.pending.number:
                log.error("new worker %d exited during reload (%s); keeping the old config", pid, describe_exit(status))
                self._abandon_pending()

    def _schedule_respawn(self, generation: _Generation, worker: _Worker, status: int) -> None:
        slot = generation.slots[worker.index]
        lived = time.monotonic() - worker.started
        if lived < _FAST_DEATH_S:
            slot.backoff_s = min(_MAX_BACKOFF_S, max(0.1, slot.backoff_s * 2))
        else:
            slot.backoff_s = 0.0
        slot.respawn_at = time.monotonic() + slot.backoff_s
        log.error("worker %d (slot %d) exited (%s); respawning in %.1fs", worker.pid, worker.index,
                  describe_exit(status), slot.backoff_s)

    def _timers(self) -> None:
        now = time.monotonic()
        self.checker.timers(now)
        self.discovery.timers(now)
        self.acme.timers(now)
        current = self.current
        if current is not None and not self.stopping:
            for index, slot in current.slots.items():
                if slot.respawn_at and slot.respawn_at <= now:
                    slot.respawn_at = 0.0
                    self._spawn(current, index)
        if self.pending is not None and now > self.pending_deadline:
            log.error("new workers not ready in %.0fs; keeping the old config", _READY_TIMEOUT_S)
            self._abandon_pending()
        for worker in list(self.workers.values()):
            if worker.kill_at and worker.kill_at <= now:
                worker.kill_at = 0.0
                kill(worker.pid, signal.SIGKILL)

    def _signal_workers(self, sig: int, which) -> None:
        for worker in self.workers.values():
            if which(worker):
                kill(worker.pid, sig)

    def _retire(self, generation_number: int) -> None:
        """Ask a generation to drain and exit; kill it if it outlives its drain timeout."""
        drain_s = float(self.current.loaded.config.server.drain_timeout) if self.current else 0.0
        kill_at = time.monotonic() + drain_s + _KILL_GRACE_S
        for worker in self.workers.values():
            if worker.generation == generation_number and not worker.stopping:
                worker.stopping = True
                worker.kill_at = kill_at
                kill(worker.pid, signal.SIGQUIT)

    # -- reload ----------------------------------------------------------------
    def _reload(self) -> None:
        if self.stopping:
            return
        if self.pending is not None:
            log.warning("reload requested while a reload is in progress; ignored")
            return
        sd_notify("RELOADING=1", monotonic_usec())
        try:
            loaded = load_config(self.config_path, self.current.loaded)
        except ConfigError as exc:
            log.error("reload refused, keeping the running config: %s", exc)
            self.metrics.reloaded("refused")
            sd_notify("READY=1", "STATUS=reload refused: bad config")
            return
        try:
            self._bind(loaded)
        except OSError as exc:
            log.error("reload refused, keeping the running config: cannot listen: %s", exc)
            self.metrics.reloaded("refused")
            sd_notify("READY=1", "STATUS=reload refused: cannot listen")
            return
        self.pending = self._start_generation(loaded, self.current.number + 1)
        self.pending_deadline = time.monotonic() + _READY_TIMEOUT_S

    def _promote_pending(self) -> None:
        old = self.current
        self.current = self.pending
        self.pending = None
        server = self.current.loaded.config.server
        errorlog.setup(server.error_log, server.log_level)
        errorlog.use_format(server.error_log_format)
        self._retire(old.number)
        self.metrics.reloaded("ok")
        self.checker.switch(self.current.loaded)
        self.discovery.switch(self.current.loaded)
        self.acme.switch(self.current.loaded)
        self.watcher.follow(self.current.loaded)
        keep = set(_listener_keys(self.current.loaded))
        keep.add(_admin_key(self.current.loaded))
        for key in list(self.listeners):
            if key not in keep:
                self.listeners.pop(key).close()
        log.info("reloaded: generation %d serving with %d workers", self.current.number, self.current.workers)
        sd_notify("READY=1", "STATUS=serving")

    def _abandon_pending(self) -> None:
        pending = self.pending
        self.pending = None
        for worker in self.workers.values():
            if worker.generation == pending.number:
                worker.stopping = True
                kill(worker.pid, signal.SIGKILL)
        sd_notify("READY=1", "STATUS=reload failed")

    # -- stop ------------------------------------------------------------------
    def _stop(self, graceful: bool) -> None:
        """Stop the workers; a fast stop may follow a graceful one, nothing follows a fast one."""
        if self.stopping and (graceful or self.fast_stop):
            return
        self.stopping = True
        self.fast_stop = not graceful
        sd_notify("STOPPING=1")
        self.watcher.stop()
        self.metrics.set_state(STOPPING)
        log.info("stopping (%s)", "graceful" if graceful else "fast")
        for listener in self.listeners.values():
            listener.close()
        if graceful:
            for number in {w.generation for w in self.workers.values()}:
                self._retire(number)
        else:
            self._signal_workers(signal.SIGTERM, lambda w: True)
            kill_at = time.monotonic() + _KILL_GRACE_S
            for worker in self.workers.values():
                worker.stopping = True
                worker.kill_at = kill_at
            self.checker.stop()
            self.discovery.stop()
            self.acme.stop()

    def _cleanup(self) -> None:
        for worker in self.workers.values():
            kill(worker.pid, signal.SIGKILL)
        self.checker.signal(signal.SIGKILL)
        self.discovery.signal(signal.SIGKILL)
        self.acme.signal(signal.SIGKILL)
        self.watcher.stop()
        for listener in self.listeners.values():
            listener.close()
        try:
            with open(self.pid_file) as f:
                if f.read().strip() == str(os.getpid()):
                    os.unlink(self.pid_file)
        except OSError:
            pass

    # -- sockets ---------------------------------------------------------------
    def _bind(self, loaded: LoadedConfig) -> None:
        """Create sockets for listeners not bound yet (existing ones are kept as they are)."""
        count = self.workers_override or _worker_count(loaded)
        listeners = list(loaded.config.listeners)
        if loaded.config.admin.address:
            listeners.append(Listener(address=loaded.config.admin.address, backlog=_ADMIN_BACKLOG))
        for listener in listeners:
            host, port = parse_address(listener.address, "")
            group = self.listeners.get((host, port))
            if group is None:
                group = ListenerSockets(listener, host, port)
                group.ensure_slots(count)
                self.listeners[group.key] = group


def _listener_keys(loaded: LoadedConfig) -> list[tuple[str, int]]:
    return [parse_address(l.address, "") for l in loaded.config.listeners]


def _admin_key(loaded: LoadedConfig) -> tuple[str, int] | None:
    address = loaded.config.admin.address
    return parse_address(address, "") if address else None


def _worker_count(loaded: LoadedConfig) -> int:
    workers = loaded.config.server.workers
    return os.cpu_count() or 1 if workers == "auto" else workers


def _drain_pipe(fd: int) -> None:
    try:
        while os.read(fd, 512):
            pass
    except BlockingIOError:
        pass


def _version() -> str:
    from fastgate import __version__

    return __version__
