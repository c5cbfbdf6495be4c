"""Continuous client load in threads, for tests that change the gateway under traffic.

Each client thread repeats its probes until ``stop()``; any exception or any
answer its probe does not accept is a failure, recorded with what happened.
"Keep-alive" clients keep one httpx connection pool for the whole run;
"fresh" clients open a new connection for every request.
"""

import threading
from dataclasses import dataclass, field
from typing import Callable

import httpx


@dataclass
class Probe:
    method: str
    path: str
    check: Callable[[httpx.Response], bool]
    body: bytes = b""
    host: str = "load.test"


@dataclass
class LoadResult:
    ok: int = 0
    failures: list[str] = field(default_factory=list)


class Load:
    def __init__(self, port: int, probes: list[Probe], keepalive_clients: int = 2, fresh_clients: int = 2) -> None:
        self.base = f"http://127.0.0.1:{port}"
        self.probes = probes
        self.result = LoadResult()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(False, i), daemon=True)
                         for i in range(keepalive_clients)]
        self._threads += [threading.Thread(target=self._run, args=(True, i), daemon=True)
                          for i in range(fresh_clients)]

    def __enter__(self) -> "Load":
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def ok(self) -> int:
        with self._lock:
            return self.result.ok

    def stop(self) -> LoadResult:
        self._stop.set()
        for t in self._threads:
            t.join(30)
        return self.result

    def _run(self, fresh: bool, index: int) -> None:
        headers = {"Connection": "close"} if fresh else {}
        with httpx.Client(base_url=self.base, timeout=15.0, headers=headers) as client:
            n = index
            while not self._stop.is_set():
                probe = self.probes[n % len(self.probes)]
                n += 1
                what = f"{'fresh' if fresh else 'keep-alive'} {probe.method} {probe.path}"
                try:
                    response = client.request(probe.method, probe.path, content=probe.body or None,
                                              headers={"Host": probe.host})
                    good = probe.check(response)
                    problem = None if good else f"{what}: unexpected {response.status_code} {response.content[:200]!r}"
                except httpx.HTTPError as exc:
                    problem = f"{what}: {exc!r}"
                with self._lock:
                    if problem is None:
                        self.result.ok += 1
                    else:
                        self.result.failures.append(problem)
