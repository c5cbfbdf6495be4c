"""A worker process: one uvloop loop serving the listener slot sockets it inherited.

Signals (sent by the master): SIGQUIT stop accepting and drain in-flight
requests for up to drain_timeout, then exit; SIGTERM/SIGINT stop at once;
SIGUSR1 reopen the log. The worker tells the master it is ready by writing
one byte to ``ready_fd`` once its sockets are being served.
"""

import asyncio
import os
import signal
import socket
import time

import uvloop

from fastgate import __version__
from fastgate.admin.endpoints import AdminEndpoints
from fastgate.admin.server import AdminListener
from fastgate.config.load import LoadedConfig
from fastgate.health.view import HealthView
from fastgate.master.memory import MemoryGiveBack, malloc_trim
from fastgate.observe import errorlog
from fastgate.observe.errorlog import log
from fastgate.observe.metrics import NO_METRICS, WorkerMetrics
from fastgate.observe.observer import RequestObserver
from fastgate.observe.shm import STOPPING, MetricsRegion, SeatTooSmall
from fastgate.observe.sinks import build_sinks, build_span_exporter
from fastgate.runtime.clock import Clock
from fastgate.transport.context import WorkerContext
from fastgate.transport.listeners import serve_listener
from fastgate.upstream.h2_pool import H2ServerPool
from fastgate.upstream.membership import MembershipView
from fastgate.upstream.pool import ServerPool

_ACCEPT_SETTLE_S = 0.1
"""After closing the listeners, time for already-accepted connections to be set up."""


def run_worker(loaded: LoadedConfig, sockets: list[tuple], admin_sockets: list[socket.socket], ready_fd: int,
               region: MetricsRegion, seat: int) -> int:
    """Serve until told to stop; returns the exit code. ``sockets`` are (ListenerSpec, slot socket)
    pairs (config/listeners.py); ``seat`` is this worker's place in ``region`` (0: none)."""
    loop = uvloop.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        return loop.run_until_complete(_serve(loop, loaded, sockets, admin_sockets, ready_fd, region, seat))
    finally:
        loop.close()


def _tick_s(loaded: LoadedConfig) -> float:
    """A quarter of the shortest timeout (client side, upstreams and routes), between 50 ms and 1 s."""
    config = loaded.config
    http = config.http
    timeouts = [http.header_timeout, http.keepalive_timeout, http.body_timeout, http.send_timeout]
    for group in loaded.upstreams.values():
        t = group.timeouts
        timeouts += [t.connect_s, t.try_s, t.total_s, t.idle_s, group.read_timeout_s, group.idle_timeout_s]
    for route in config.routes:
        timeouts += [route.connect_timeout, route.try_timeout, route.total_timeout, route.idle_timeout]
    return min(1.0, max(0.05, min(t for t in timeouts if t) / 4))


async def _serve(loop, loaded: LoadedConfig, sockets: list[tuple], admin_sockets: list[socket.socket],
                 ready_fd: int, region: MetricsRegion, seat: int) -> int:
    config = loaded.config
    clock = Clock(loop, _tick_s(loaded))
    errorlog.use_format(config.server.error_log_format)  # a reload may have changed it
    for group in loaded.upstreams.values():
        pool_class = H2ServerPool if group.protocol == "h2" else ServerPool
        group.attach_pools(lambda g, spec, pool_class=pool_class: pool_class(g, spec, loop, clock), clock)
    HealthView.attach(loaded.health, loaded.upstreams.values(), clock)
    loaded.limiter.attach(loop)
    sinks = build_sinks(loaded, loop)
    spans = build_span_exporter(loaded, loop)
    metrics = _metrics(loaded, sinks, spans, region, seat)
    observer = RequestObserver(metrics, sinks, spans)
    ctx = WorkerContext(loaded, clock, observer)

    def servers_changed(group, added: list, retired: list) -> None:
        metrics.servers_changed(group, added, retired)
        observer.count_request = metrics.request_done

    membership = MembershipView(loaded.servers, loaded.upstreams, servers_changed)
    membership.refresh()
    clock.on_tick.append(membership.on_tick)
    clock.on_tick.append(lambda: metrics.publish(len(ctx.connections)))
    memory = MemoryGiveBack(malloc_trim())
    clock.on_tick.append(lambda: memory.on_tick(len(ctx.connections)))
    if observer.outputs:
        clock.on_tick.append(observer.flush)
    handshakes: set = set()
    """TLS handshakes in flight (transport/tls.py), cancelled when the worker stops."""
    servers = [await serve_listener(loop, ctx, spec, sock, handshakes) for spec, sock in sockets]
    admin = AdminListener(AdminEndpoints(config, region, config.admin.metrics, time.time(), __version__,
                                         loaded.listeners, loaded.acme, loaded.limiter.metrics_exposition,
                                         loaded.servers, membership.refresh))
    await admin.serve(loop, admin_sockets)
    clock.start()
    stopped = loop.create_future()

    def reopen_logs() -> None:
        errorlog.reopen()
        observer.reopen()

    def stop(code: int) -> None:
        if not stopped.done():
            stopped.set_result(code)

    def graceful() -> None:
        if ctx.draining:
            return
        ctx.draining = True
        for server in servers:
            server.close()
        if region.state != STOPPING:  # retired by a reload: the new generation answers the admin listener
            admin.stop_accepting()
        loop.call_later(float(config.server.drain_timeout), stop, 0)
        # Connections the loop accepted just before the close may not have
        # reached connection_made yet; judge emptiness only after they have.
        loop.call_later(_ACCEPT_SETTLE_S, drain_open_connections)

    def drain_open_connections() -> None:
        ctx.on_drained = lambda: stop(0)
        for conn in list(ctx.connections):
            conn.drain()
        if not ctx.connections:
            stop(0)

    loop.add_signal_handler(signal.SIGQUIT, graceful)
    loop.add_signal_handler(signal.SIGTERM, stop, 0)
    loop.add_signal_handler(signal.SIGINT, stop, 0)
    loop.add_signal_handler(signal.SIGUSR1, reopen_logs)
    loop.add_signal_handler(signal.SIGHUP, lambda: None)
    os.write(ready_fd, b"1")
    os.close(ready_fd)
    log.debug("worker serving %d sockets", len(sockets))
    code = await stopped
    for server in servers:
        server.close()
    for conn in list(ctx.connections):
        conn.transport.abort()
    for task in list(handshakes):
        task.cancel()
    await asyncio.gather(*handshakes, return_exceptions=True)
    for group in loaded.upstreams.values():
        for pool in group.pools:
            pool.close_idle()
    await admin.close()
    await loaded.limiter.close()
    await observer.close()
    metrics.publish(0)  # what was counted since the last tick, before the master folds the seat
    clock.stop()
    return code


def _metrics(loaded: LoadedConfig, sinks: list, spans, region: MetricsRegion, seat: int):
    """This worker's metrics, counting in its shared seat; a no-op stand-in when they are off."""
    if not loaded.config.admin.metrics:
        return NO_METRICS
    metrics = WorkerMetrics(loaded, tuple(sinks), spans)
    if seat:
        try:
            metrics.bind(region.publish_layout(seat, metrics.layout))
        except SeatTooSmall as exc:
            log.warning("metrics of this worker stay private: %s", exc)
    return metrics
