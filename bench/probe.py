"""Check with one real request that a proxy answers a scenario correctly.

wrk only counts statuses of 400 and more and does not look at bodies or
headers, so before a proxy is measured this probe checks what wrk cannot:
status 200, the whole body, ``Connection: close`` honoured, and that the
gateway features the proxy claims reached the origin and the client.
"""

import http.client
import ssl

from bench.scenarios import Scenario


class ProbeError(Exception):
    """The proxy answered the probe wrongly, or not at all."""


def probe(port: int, scenario: Scenario, features: list[str]) -> None:
    """Raise ProbeError saying what is wrong with the proxy's answer."""
    if scenario.tls:
        conn = http.client.HTTPSConnection("127.0.0.1", port, timeout=10, context=ssl._create_unverified_context())
    else:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", scenario.path, headers=scenario.headers)
        response = conn.getresponse()
        body = response.read()
    except (OSError, http.client.HTTPException) as exc:
        raise ProbeError(f"GET {scenario.path} failed: {exc!r}") from None
    finally:
        conn.close()
    problems = []
    if response.status != 200:
        problems.append(f"status {response.status}, expected 200")
    if len(body) != scenario.body_bytes:
        problems.append(f"body of {len(body)} bytes, expected {scenario.body_bytes}")
    if scenario.close and (response.getheader("Connection") or "").lower() != "close":
        problems.append("no 'Connection: close' in the answer to a request that asked for it")
    if "request_id" in features:
        sent = response.getheader("X-Request-ID")
        seen = response.getheader("X-Seen-Request-Id")
        if not sent or sent != seen:
            problems.append(f"X-Request-ID echoed {sent!r} but the origin got {seen!r}")
    if "forwarded_headers" in features and "127.0.0.1" not in (response.getheader("X-Seen-Forwarded-For") or ""):
        problems.append("the origin got no X-Forwarded-For with the client address")
    if problems:
        raise ProbeError(f"GET {scenario.path}: " + "; ".join(problems))
