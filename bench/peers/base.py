"""What every proxy under test shares: how it is asked to run, started and watched."""

import shutil
from dataclasses import dataclass
from pathlib import Path

from bench.procs import Proc, ProcError, fd_limit

START_TIMEOUT_S = 20.0

GATEWAY_FEATURES = {
    "request_id": "keep the client's X-Request-ID or generate one, send it upstream, echo it back",
    "forwarded_headers": "set X-Forwarded-For, X-Forwarded-Proto and X-Forwarded-Host upstream",
    "rate_limit": "a local per-client-IP rate limit with a rate that never triggers",
    "rate_limit_redis": "the same limit kept in Redis (fastgate only)",
    "rate_limit_redis_cluster": "the same limit kept in a 3-node Redis Cluster (fastgate only)",
    "json_access_log": "one JSON line per request written to a file (HAProxy: to stdout)",
    "metrics": "count requests and upstream events in shared memory (fastgate only)",
    "tracing": "W3C Trace Context: continue or start a trace, send the upstream a traceparent (fastgate only)",
}
"""The work a "gateway" route does beyond plain proxying; each proxy implements what it can."""


@dataclass(frozen=True)
class ProxySpec:
    """What a proxy is asked to do in one scenario."""

    workdir: Path
    """Where its config, pid file, logs and temp files go; start() creates it."""
    port: int
    origin_port: int
    workers: int
    """Worker processes (nginx, fastgate) or threads (HAProxy)."""
    features: frozenset[str]
    """Names from GATEWAY_FEATURES to turn on; empty for plain proxying."""
    max_connections: int
    """Client connections it must hold at once. Sizes nginx's worker_connections and
    HAProxy's maxconn, which both preallocate for that many: a cap sized to the
    open-file limit would inflate their memory figures."""
    redis_port: int = 0
    """The redis-server for the rate_limit_redis feature (a node of the cluster for
    rate_limit_redis_cluster), or 0."""
    tls: tuple[Path, Path] | None = None
    """(certificate, key) PEM files when clients speak HTTPS to the proxy, else None."""
    http2: bool = False
    """Clients speak HTTP/2 to the proxy: with ``tls`` as ALPN picks it (h2), else cleartext
    with prior knowledge (h2c). The origin is spoken to in HTTP/1.1 either way."""


@dataclass
class Running:
    """A proxy that started and listens."""

    name: str
    proc: Proc
    master_pid: int | None
    """The supervising process, or None when one process does everything (HAProxy)."""
    worker_pids: list[int]
    """The processes that serve requests; their CPU time is what is measured."""
    features: list[str]
    """Gateway features actually active, recorded in latest.json."""
    access_log: Path | None = None
    """The file it writes one line per request to, when the harness is to count them."""

    def check_workers(self) -> None:
        """ProcError if the proxy died or its set of workers changed (a worker crashed)."""
        now = self.proc.children() if self.master_pid else [self.proc.pid]
        if not self.proc.alive() or now != self.worker_pids:
            raise ProcError(
                f"{self.name}: workers {self.worker_pids} became {now} (alive: {self.proc.alive()})\n"
                f"{self.proc.log_tail()}"
            )


class Proxy:
    """A proxy under test; subclasses write its config and say how to run it."""

    name: str
    binary: str
    """The command that must be on PATH."""
    install_hint: str
    required: bool
    """A required proxy that is missing fails the run; an optional one is skipped."""
    multiprocess: bool
    """True: a master forks ``workers`` worker processes; False: one process with threads."""

    def missing(self) -> str | None:
        """None if the proxy can run here, else why not and how to install it."""
        if shutil.which(self.binary):
            return None
        return f"{self.binary} not found; install it with: {self.install_hint}"

    def version(self) -> str:
        raise NotImplementedError

    def http2_missing(self) -> str | None:
        """None if this build can serve HTTP/2 to clients, else why not."""
        return None

    def max_client_connections(self) -> int:
        """The largest ``max_connections`` it can start with under the open-file limit it inherits."""
        return fd_limit() - 200

    def access_log(self, spec: ProxySpec) -> Path | None:
        """The file its access log goes to under ``spec``, if the harness is to count its lines."""
        return None

    def configure(self, spec: ProxySpec, log: Path) -> tuple[list[str], list[str]]:
        """Write the config for ``spec`` under spec.workdir; return the command
        line and the gateway features that are active. Errors go to ``log``."""
        raise NotImplementedError

    def start(self, spec: ProxySpec, cpus: tuple[int, ...] | None) -> Running:
        spec.workdir.mkdir(parents=True)
        log = spec.workdir / "server.log"
        argv, features = self.configure(spec, log)
        proc = Proc(self.name, argv, log, cpus)
        try:
            proc.wait_for_port(spec.port, START_TIMEOUT_S)
            if self.multiprocess:
                workers = proc.wait_for_children(spec.workers, START_TIMEOUT_S)
                master = proc.pid
            else:
                workers, master = [proc.pid], None
        except BaseException:
            proc.stop()
            raise
        return Running(self.name, proc, master, workers, features, self.access_log(spec))


def first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else "unknown"
