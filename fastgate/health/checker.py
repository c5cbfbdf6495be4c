"""The health checker: a process of its own that probes every checked server and records the verdicts.

Theory of operation
-------------------
The master forks one checker per gateway (health/process.py), so the
number of probes does not depend on the number of workers. The checker runs
a uvloop loop with one task per checked server (a server listed in two
upstreams is checked for each). Every ``interval`` the task opens a new
connection, sends ``GET path HTTP/1.1`` with ``Connection: close`` and
reads the response head; the check passes when the head arrives within
``timeout`` and its status is one of ``expect``. An upstream with
``protocol = "h2"`` is checked in HTTP/2 instead, by GET path or by the gRPC
health protocol (health/h2_probe.py). After the head, up to
64 KiB of body are read until the server closes (within what is left of
the timeout), so that the server is not reset while it still writes; that
part does not count. An upstream with ``tls = true`` is checked over TLS with
its own client context (verification, SNI, client certificate), as its
requests are. Each result goes to the shared table (health/state.py), which counts
rise and fall; a server going down or up is logged once, here.

Checks of one server start ``interval`` apart (a slow check does not push
the next one later; a check is never started while the previous one runs,
because ``timeout`` < ``interval``). The first round starts at once.

Signals: TERM, INT or QUIT stop the checker at once (a check in flight is
abandoned); USR1 reopens the log. The checker also stops when its master
is gone.
"""

import asyncio
import ssl
from dataclasses import dataclass

import uvloop

from fastgate.config.load import LoadedConfig
from fastgate.health.h2_probe import SERVING, ProbeFailed, probe_h2
from fastgate.health.settings import expected_statuses, probe_request
from fastgate.health.state import HealthTable
from fastgate.observe import errorlog
from fastgate.observe.errorlog import log
from fastgate.runtime.helper_process import name_process, run_until_stopped
from fastgate.wire.h1 import HEAD_END, HeadError, parse_response_head

PROCESS_NAME = b"fastgate-health"
"""The checker's name in ps and /proc/PID/comm (at most 15 bytes)."""
_BODY_DRAIN_BYTES = 64 * 1024
_ORPHAN_CHECK_S = 1.0


@dataclass(frozen=True, slots=True)
class Target:
    """One server to check, with its upstream's settings compiled."""

    upstream: str
    address: str
    host: str
    port: int
    slot: int
    request: bytes
    expected: frozenset[int]
    interval_s: float
    timeout_s: float
    rise: int
    fall: int
    tls: ssl.SSLContext | None = None
    """The upstream's TLS client context (an HTTPS upstream is checked over TLS), or None."""
    server_hostname: str | None = None
    """SNI and the name its certificate must carry, as for requests (upstream/pool.py)."""
    h2: bool = False
    """The upstream speaks HTTP/2 (protocol = "h2"): checked in HTTP/2."""
    grpc_service: str | None = None
    """With ``h2``: the service asked about by grpc.health.v1.Health/Check; None: GET path."""
    authority: bytes = b""
    """With ``h2``: the :authority of the check (the health table's host, else the server's address)."""
    path: bytes = b"/"


def targets(loaded: LoadedConfig) -> list[Target]:
    """Every server of every upstream with a health table, each slot once."""
    found: dict[int, Target] = {}
    for group in loaded.upstreams.values():
        health = group.health
        if health is None:
            continue
        expected = expected_statuses(health)
        tls = group.tls
        for spec in group.servers:
            found.setdefault(spec.health_slot, Target(
                group.name, spec.address, spec.host, spec.port, spec.health_slot,
                probe_request(health, spec.address), expected, float(health.interval),
                float(health.timeout), health.rise, health.fall,
                tls.context if tls is not None else None, tls.server_hostname(spec.host) if tls is not None else None,
                group.protocol == "h2", health.grpc_service, (health.host or spec.address).encode(),
                health.path.encode()))
    return list(found.values())


def run_checker(loaded: LoadedConfig, master_pid: int) -> int:
    """The checker process's main: check until told to stop; returns the exit code."""
    name_process(PROCESS_NAME)
    loop = uvloop.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        return loop.run_until_complete(_check_all(loop, loaded.health, targets(loaded), master_pid))
    finally:
        loop.close()


async def _check_all(loop, table: HealthTable, checked: list[Target], master_pid: int) -> int:
    tasks = [loop.create_task(_check_forever(loop, table, target)) for target in checked]
    log.info("health checker started: %d servers", len(checked))
    return await run_until_stopped(
        loop, tasks, master_pid, _ORPHAN_CHECK_S,
        lambda: log.warning("health checker: master %d is gone; stopping", master_pid), errorlog.reopen)


async def _check_forever(loop, table: HealthTable, target: Target) -> None:
    next_at = loop.time()
    while True:
        try:
            passed, outcome = await probe(target)
            if table.record(target.slot, passed, target.rise, target.fall):
                _log_transition(table, target, passed, outcome)
        except Exception:  # a bug here must not stop the other servers' checks
            log.exception("health checker: internal error checking %s", target.address)
        next_at += target.interval_s
        now = loop.time()
        if next_at < now:  # the loop was held up: skip the missed rounds instead of bursting
            next_at = now
        await asyncio.sleep(next_at - now)


async def probe(target: Target) -> tuple[bool, str]:
    """One check: (passed, what happened, e.g. "status 503" or "timed out")."""
    deadline = asyncio.get_running_loop().time() + target.timeout_s
    writer = None
    try:
        async with asyncio.timeout_at(deadline):
            if target.tls is None:
                reader, writer = await asyncio.open_connection(target.host, target.port)
            else:
                reader, writer = await asyncio.open_connection(target.host, target.port, ssl=target.tls,
                                                               server_hostname=target.server_hostname)
            if target.h2:
                status = await probe_h2(reader, writer, target.authority, target.path,
                                        b"https" if target.tls is not None else b"http", target.grpc_service)
            else:
                writer.write(target.request)
                raw = await reader.readuntil(HEAD_END)
                status = parse_response_head(raw, b"GET").status
        if target.grpc_service is not None:
            return status == SERVING, "SERVING" if status == SERVING else f"serving status {status}"
        if not target.h2:  # (an HTTP/2 check's connection closes with a GOAWAY at once)
            await _drain(reader, deadline)
        return status in target.expected, f"status {status}"
    except TimeoutError:
        return False, f"no response within {target.timeout_s:g}s"
    except asyncio.IncompleteReadError:
        return False, "connection closed before a response head"
    except asyncio.LimitOverrunError:
        return False, "response head too large"
    except (HeadError, ProbeFailed) as exc:
        return False, str(exc) if isinstance(exc, ProbeFailed) else exc.reason
    except ssl.SSLCertVerificationError as exc:
        return False, f"TLS: certificate not trusted: {exc.verify_message}"
    except ssl.SSLError as exc:
        return False, f"TLS handshake failed: {exc.reason or type(exc).__name__}"
    except OSError as exc:
        return False, exc.strerror or type(exc).__name__
    finally:
        if writer is not None:
            writer.close()


async def _drain(reader: asyncio.StreamReader, deadline: float) -> None:
    """Read what the server still sends, up to a bound, until it closes; errors do not matter."""
    left = _BODY_DRAIN_BYTES
    try:
        async with asyncio.timeout_at(deadline):
            while left > 0 and (data := await reader.read(left)):
                left -= len(data)
    except (TimeoutError, OSError):
        pass


def _log_transition(table: HealthTable, target: Target, passed: bool, outcome: str) -> None:
    state = table.read(target.slot)
    if passed:
        log.warning("health: upstream %s server %s is up (checks passed in a row: %d)",
                    target.upstream, target.address, state.passed)
    else:
        log.warning("health: upstream %s server %s is down (checks failed in a row: %d, last: %s)",
                    target.upstream, target.address, state.failed, outcome)
