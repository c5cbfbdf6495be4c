"""Profile a fastgate worker with py-spy while wrk loads it (``--profile``)."""

import shutil
from collections.abc import Callable
from pathlib import Path

from bench.procs import Proc


def available() -> bool:
    return shutil.which("py-spy") is not None


def record(pid: int, svg: Path, duration_s: float, load: Callable[[], object]) -> None:
    """Sample ``pid`` for ``duration_s`` while ``load()`` runs; write a flame graph to ``svg``.

    py-spy stops the process for each sample, so the figures of a profiled run
    are not comparable: the caller makes it an extra run, not a measured one.
    """
    argv = ["py-spy", "record", "--pid", str(pid), "--duration", str(round(duration_s)),
            "--rate", "200", "--format", "flamegraph", "--output", str(svg)]
    with Proc("py-spy", argv, svg.with_suffix(".log")) as spy:
        load()
        status = spy.wait(30.0)
        if status != 0:
            raise RuntimeError(f"py-spy exited with status {status}\n{spy.log_tail()}")
