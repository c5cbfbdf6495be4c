"""Run wrk once and read its figures (through wrk_report.lua)."""

import json
import subprocess
from pathlib import Path

from bench.load import LoadResult
from bench.procs import pinned

_SCRIPT = Path(__file__).with_name("wrk_report.lua")
_MARKER = "BENCH-JSON "


def run_wrk(url: str, duration_s: int, connections: int, threads: int,
            headers: dict[str, str], cpus: tuple[int, ...] | None) -> LoadResult:
    argv = ["wrk", "-t", str(threads), "-c", str(connections), "-d", f"{duration_s}s",
            "--timeout", "5s", "-s", str(_SCRIPT)]
    for name, value in headers.items():
        argv += ["-H", f"{name}: {value}"]
    timeout_s = duration_s + 30
    try:  # subprocess.run kills wrk if the time runs out or the harness is interrupted
        out = subprocess.run(pinned([*argv, url], cpus), capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"wrk did not finish within {timeout_s:.0f} s") from None
    line = next((l for l in out.stdout.splitlines() if l.startswith(_MARKER)), None)
    if out.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed (status {out.returncode}):\n{out.stdout}{out.stderr}")
    d = json.loads(line[len(_MARKER):])
    duration_s = d["duration_us"] / 1e6
    return LoadResult(
        requests=d["requests"],
        duration_s=duration_s,
        rps=d["requests"] / duration_s,
        p50_ms=d["p50_us"] / 1000,
        p99_ms=d["p99_us"] / 1000,
        socket_errors={k: d[k] for k in ("connect", "read", "write", "timeout")},
        non_2xx=d["status"],
    )


def wrk_version() -> str:
    out = subprocess.run(["wrk", "-v"], capture_output=True, text=True, timeout=10)
    return (out.stdout or out.stderr).split(" Copyright")[0].strip()
