"""Keep-alive connections to one upstream server, per worker."""

import asyncio

from fastgate.runtime.clock import Clock
from fastgate.upstream.connection import UpstreamConnection

_EWMA_START_S = 0.001
_EWMA_WEIGHT = 0.2


class ServerPool:
    """Idle connections to one server (LIFO), and new connections on demand.

    A connection comes back through ``release`` only after a clean, complete
    exchange; the pool keeps it if there is room and it has not served
    ``max_requests_per_connection`` requests and the server is not drained (or
    retired: upstream/membership.py), else closes it; while requests wait for a
    connection slot (upstream/connection_limit.py) it goes to one of them instead. Idle
    connections older than the group's idle timeout are closed by the clock's sweep.
    """

    __slots__ = ("group", "host", "port", "label", "host_header", "loop", "clock", "idle", "weight", "backup", "drain",
                 "active", "ewma_s", "failures", "ejected", "ejections", "deadline", "down", "opened", "reused",
                 "ssl", "server_hostname")

    def __init__(self, group, spec, loop: asyncio.AbstractEventLoop, clock: Clock) -> None:
        self.group = group
        self.host = spec.host
        self.port = spec.port
        self.label = f"{spec.host}:{spec.port}"
        self.host_header = self.label.encode()
        """Host sent upstream for an HTTP/1.0 request that had none."""
        self.loop = loop
        self.clock = clock
        tls = group.tls
        self.ssl = tls.context if tls is not None else None
        """The upstream's TLS client context (HTTPS upstream), or None."""
        self.server_hostname = tls.server_hostname(spec.host) if tls is not None else None
        """The name sent in SNI and checked against the server's certificate."""
        self.idle: list[UpstreamConnection] = []
        # what balancers read (upstream/balancer.py)
        self.weight = spec.weight
        self.backup = spec.backup
        self.drain = spec.drain
        self.active = 0
        """Requests in flight to this server from this worker."""
        self.ewma_s = _EWMA_START_S
        """Smoothed time to the response head, for p2c_ewma."""
        # passive health (UpstreamGroup.record_failure)
        self.failures = 0
        """Failed exchanges in a row."""
        self.ejected = False
        self.ejections = 0
        """Times this server was ejected; the next ejection lasts that much longer."""
        self.deadline = 0.0
        """While ejected, when it comes back (the clock calls on_deadline)."""
        # active health (health/view.py)
        self.down = False
        """The health checker found the server down."""
        # counts, read by the worker's metrics on the clock tick (observe/metrics.py)
        self.opened = 0
        """Connections made to this server (counted when made: a failed connect is a connect error)."""
        self.reused = 0
        """Requests given a kept-alive connection."""

    def acquire(self) -> UpstreamConnection | None:
        """An idle connection that is still open, or None."""
        idle = self.idle
        while idle:
            conn = idle.pop()
            if conn.usable():
                conn.deadline = 0.0
                self.reused += 1
                return conn
        return None

    def connect(self, on_done) -> asyncio.Future:
        """Start a new connection; ``on_done(future)`` runs when it is made or failed.

        The connection holds a slot of the group's ConnectionLimit from now until it closes (or
        the connect fails); the caller checks that there is one.
        """
        conn = UpstreamConnection(self)
        self.group.limit.opened()
        if self.ssl is None:
            connecting = self.loop.create_connection(lambda: conn, self.host, self.port)
        else:  # the future ends after the TLS handshake, within the caller's connect deadline
            connecting = self.loop.create_connection(lambda: conn, self.host, self.port, ssl=self.ssl,
                                                     server_hostname=self.server_hostname)
        future = asyncio.ensure_future(connecting)
        future.add_done_callback(conn.connect_done)
        future.add_done_callback(on_done)
        return future

    def release(self, conn: UpstreamConnection) -> None:
        group = self.group
        if (self.drain or not conn.usable()
                or (group.max_requests_per_conn and conn.requests >= group.max_requests_per_conn)):
            conn.close()
        elif group.limit.waiting:
            self.reused += 1
            group.limit.hand_over(self, conn)
        elif len(self.idle) < group.max_idle:
            conn.deadline = self.clock.now + group.idle_timeout_s
            self.idle.append(conn)
        else:
            conn.close()

    def forget(self, conn: UpstreamConnection) -> None:
        """A pooled connection closed by the server: drop it from the idle list."""
        try:
            self.idle.remove(conn)
        except ValueError:
            pass

    def on_deadline(self) -> None:
        self.group.restore(self)

    def observe(self, seconds: float) -> None:
        """Fold one response time into the moving average."""
        self.ewma_s += _EWMA_WEIGHT * (seconds - self.ewma_s)

    def close_idle(self) -> None:
        for conn in self.idle:
            conn.close()
        self.idle.clear()
