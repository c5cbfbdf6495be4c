"""Run h2load (nghttp2's HTTP/2 load generator) once and read its figures.

h2load's summary has the counts (succeeded, failed, errored, timeout, status
classes), the time it ran and the protocol it spoke, but no latency
percentiles: those come from its per-request log (``--log-file``: start,
status, microseconds to the end of the response), written to a temporary
file and read after the run. The log costs h2load one small write per
request, the same for every proxy.
"""

import math
import re
import subprocess
import tempfile
from pathlib import Path

from bench.load import LoadResult
from bench.procs import pinned

HTTP2_PROTOCOLS = frozenset({"h2", "h2c"})
"""What h2load says it spoke when it spoke HTTP/2 (over TLS by ALPN, and cleartext)."""

_UNIT_S = {"s": 1.0, "ms": 1e-3, "us": 1e-6}
_FINISHED = re.compile(r"^finished in ([\d.]+)(s|ms|us), ", re.M)
_REQUESTS = re.compile(r"^requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, "
                       r"(\d+) failed, (\d+) errored, (\d+) timeout$", re.M)
_STATUS = re.compile(r"^status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx$", re.M)
_PROTOCOL = re.compile(r"^Application protocol: (\S+)$", re.M)


def _percentile_ms(sorted_us: list[int], percent: float) -> float:
    """Nearest-rank percentile of microsecond latencies, in milliseconds (0.0 without any)."""
    if not sorted_us:
        return 0.0
    rank = max(math.ceil(percent / 100 * len(sorted_us)), 1)
    return sorted_us[rank - 1] / 1000


def parse(summary: str, log: str) -> LoadResult:
    """The figures of one run from h2load's stdout (``summary``) and its ``--log-file``.

    ``requests`` counts the responses with a status (2xx and 3xx succeeded,
    4xx and 5xx are ``non_2xx``). A stream that got no whole response is a
    socket error: "timeout" (h2load's timeout), "connection" (lost with its
    connection, or never sent because the connection failed; h2load's
    errored, less the timeouts) or "incomplete" (closed without a whole
    response, e.g. reset by the server; the rest of h2load's failed).
    RuntimeError if the summary is not there, or if h2load spoke something
    other than HTTP/2 (a server that picked http/1.1 by ALPN).
    """
    finished, requests, status = _FINISHED.search(summary), _REQUESTS.search(summary), _STATUS.search(summary)
    if not (finished and requests and status):
        raise RuntimeError(f"no h2load summary in its output:\n{summary}")
    protocol = _PROTOCOL.search(summary)
    if protocol and protocol.group(1) not in HTTP2_PROTOCOLS:
        raise RuntimeError(f"h2load spoke {protocol.group(1)}, not HTTP/2")
    duration_s = float(finished.group(1)) * _UNIT_S[finished.group(2)]
    succeeded, failed, errored, timeout = (int(requests.group(i)) for i in (4, 5, 6, 7))
    non_2xx = int(status.group(3)) + int(status.group(4))
    latencies_us = sorted(int(columns[2]) for columns in (row.split("\t") for row in log.splitlines())
                          if len(columns) >= 3 and columns[1] != "-1")
    answered = succeeded + non_2xx
    return LoadResult(
        requests=answered,
        duration_s=duration_s,
        rps=answered / duration_s if duration_s else 0.0,
        p50_ms=_percentile_ms(latencies_us, 50),
        p99_ms=_percentile_ms(latencies_us, 99),
        socket_errors={"connection": errored - timeout, "timeout": timeout,
                       "incomplete": max(failed - errored - non_2xx, 0)},
        non_2xx=non_2xx,
    )


def run_h2load(url: str, duration_s: int, connections: int, streams: int, threads: int,
               cpus: tuple[int, ...] | None) -> LoadResult:
    """``connections`` HTTP/2 connections to ``url`` (h2c for http://, ALPN for https://),
    each keeping ``streams`` requests in flight, for ``duration_s`` seconds."""
    timeout_s = duration_s + 30
    with tempfile.TemporaryDirectory(prefix="bench-h2load-") as tmp:
        log = Path(tmp) / "requests.tsv"
        argv = ["h2load", "-t", str(min(threads, connections)), "-c", str(connections), "-m", str(streams),
                "-D", f"{duration_s}s", f"--log-file={log}", url]
        try:  # subprocess.run kills h2load if the time runs out or the harness is interrupted
            out = subprocess.run(pinned(argv, cpus), capture_output=True, text=True, timeout=timeout_s)
        except subprocess.TimeoutExpired:
            raise RuntimeError(f"h2load did not finish within {timeout_s:.0f} s") from None
        if out.returncode != 0:
            raise RuntimeError(f"h2load failed (status {out.returncode}):\n{out.stdout}{out.stderr}")
        result = parse(out.stdout, log.read_text() if log.exists() else "")
    if result.requests == 0 and result.errors == 0:
        raise RuntimeError(f"h2load got no response in {duration_s} s:\n{out.stdout}")
    return result


def h2load_version() -> str:
    out = subprocess.run(["h2load", "--version"], capture_output=True, text=True, timeout=10)
    return out.stdout.strip().removeprefix("h2load ")
