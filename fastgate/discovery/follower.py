"""The discovery helper: a process of its own that follows the DNS names of upstreams and writes their servers.

Theory of operation
-------------------
The master forks one helper per gateway (discovery/process.py), so DNS is
asked once, not once per worker. It runs a uvloop loop with one task per
upstream that has a ``discovery`` table. The task resolves the name
(discovery/dns.py) at once, then again after the answer's TTL (at least 1s,
at most ``interval``). A resolution that gives servers replaces the
upstream's base in the shared server table (upstream/server_table.py),
which every worker applies on its next clock tick (upstream/membership.py);
a server that left is drained there, not cut. A failed one keeps the
servers the upstream has, counts in the table (``failed``, in /metrics as
``fastgate_discovery_resolutions_total{outcome="failed"}``), is logged, and
is tried again after the shorter of interval and 5s.

Signals: TERM, INT or QUIT stop the helper at once; USR1 reopens the log.
The helper also stops when its master is gone.
"""

import asyncio

import uvloop

from fastgate.config.load import LoadedConfig
from fastgate.config.schema import DnsDiscovery
from fastgate.discovery.dns import ResolutionFailed, make_resolver, resolve
from fastgate.observe import errorlog
from fastgate.observe.errorlog import log
from fastgate.runtime.helper_process import name_process, run_until_stopped
from fastgate.upstream.server_table import ServerTable, TableFull

PROCESS_NAME = b"fastgate-dns"
"""The helper's name in ps and /proc/PID/comm (at most 15 bytes)."""
_MIN_WAIT_S = 1.0
_RETRY_S = 5.0
_ORPHAN_CHECK_S = 1.0


def run_discovery(loaded: LoadedConfig, master_pid: int) -> int:
    """The helper process's main: follow every discovery table until told to stop; returns the exit code."""
    name_process(PROCESS_NAME)
    loop = uvloop.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        return loop.run_until_complete(_follow_all(loop, loaded, master_pid))
    finally:
        loop.close()


async def _follow_all(loop, loaded: LoadedConfig, master_pid: int) -> int:
    followed = [c for c in loaded.config.upstreams if c.discovery is not None]
    tasks = [loop.create_task(_follow(loaded.servers, c.name, c.discovery)) for c in followed]
    log.info("discovery helper started: %d upstreams", len(followed))
    return await run_until_stopped(
        loop, tasks, master_pid, _ORPHAN_CHECK_S,
        lambda: log.warning("discovery helper: master %d is gone; stopping", master_pid), errorlog.reopen)


async def _follow(table: ServerTable, upstream: str, discovery: DnsDiscovery) -> None:
    resolver = make_resolver(discovery)
    interval_s = float(discovery.interval)
    while True:
        wait_s = min(interval_s, _RETRY_S)
        try:
            found = await resolve(resolver, discovery)
            with table.edit(upstream) as servers:
                before = servers.base
                servers.base = found.servers
                servers.resolved += 1
            if before != found.servers:
                log.info("discovery: upstream %s now has %d servers from %s %s: %s", upstream, len(found.servers),
                         discovery.type, discovery.name, " ".join(s.address for s in found.servers))
            wait_s = min(interval_s, max(_MIN_WAIT_S, found.ttl_s))
        except (ResolutionFailed, TableFull) as exc:
            with table.edit(upstream) as servers:
                servers.failed += 1
            log.warning("discovery: upstream %s keeps its %d servers: %s", upstream, len(servers.base), exc)
        except Exception:  # a bug here must not stop the other upstreams' discovery
            log.exception("discovery: internal error resolving %s for upstream %s", discovery.name, upstream)
        await asyncio.sleep(wait_s)
