"""Check with one real request that a proxy answers a scenario correctly.

wrk and h2load only count statuses and do not look at bodies or headers, so
before a proxy is measured this probe checks what they cannot: status 200,
the whole body, ``Connection: close`` honoured, HTTP/2 spoken where the
scenario asks for it, and that the gateway features the proxy claims reached
the origin and the client. HTTP/1.1 is asked with http.client, HTTP/2 with
httpx (h2c with prior knowledge, or ALPN offering h2 and http/1.1 over TLS).
"""

import http.client
import ssl
from collections.abc import Mapping

import httpx

from bench.scenarios import Scenario


class ProbeError(Exception):
    """The proxy answered the probe wrongly, or not at all."""


def _get_http1(port: int, scenario: Scenario) -> tuple[str, int, Mapping[str, str], bytes]:
    if scenario.tls:
        conn = http.client.HTTPSConnection("127.0.0.1", port, timeout=10, context=ssl._create_unverified_context())
    else:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", scenario.path, headers=scenario.headers)
        response = conn.getresponse()
        return "HTTP/1.1", response.status, response.headers, response.read()
    except (OSError, http.client.HTTPException) as exc:
        raise ProbeError(f"GET {scenario.path} failed: {exc!r}") from None
    finally:
        conn.close()


def _get_http2(port: int, scenario: Scenario) -> tuple[str, int, Mapping[str, str], bytes]:
    # http1=False on a plain URL is h2c with prior knowledge; over TLS, ALPN offers both and the proxy picks.
    with httpx.Client(http1=scenario.tls, http2=True, verify=False, timeout=10) as client:
        try:
            response = client.get(f"{'https' if scenario.tls else 'http'}://127.0.0.1:{port}{scenario.path}",
                                  headers=scenario.headers)
        except httpx.HTTPError as exc:
            raise ProbeError(f"GET {scenario.path} over HTTP/2 failed: {exc!r}") from None
        return response.http_version, response.status_code, response.headers, response.content


def probe(port: int, scenario: Scenario, features: list[str]) -> None:
    """Raise ProbeError saying what is wrong with the proxy's answer."""
    version, status, headers, body = (_get_http2 if scenario.http2 else _get_http1)(port, scenario)
    problems = []
    if scenario.http2 and version != "HTTP/2":
        problems.append(f"answered in {version}, expected HTTP/2")
    if status != 200:
        problems.append(f"status {status}, expected 200")
    if len(body) != scenario.body_bytes:
        problems.append(f"body of {len(body)} bytes, expected {scenario.body_bytes}")
    if scenario.close and (headers.get("Connection") or "").lower() != "close":
        problems.append("no 'Connection: close' in the answer to a request that asked for it")
    if "request_id" in features:
        sent = headers.get("X-Request-ID")
        seen = headers.get("X-Seen-Request-Id")
        if not sent or sent != seen:
            problems.append(f"X-Request-ID echoed {sent!r} but the origin got {seen!r}")
    if "forwarded_headers" in features and "127.0.0.1" not in (headers.get("X-Seen-Forwarded-For") or ""):
        problems.append("the origin got no X-Forwarded-For with the client address")
    if problems:
        raise ProbeError(f"GET {scenario.path}: " + "; ".join(problems))
