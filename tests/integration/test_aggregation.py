"""Response aggregation: one request fanned out to several upstreams, their JSON merged under keys.

Two real upstream servers ("users" and "orders") answer the parts; the
query string of each part's path tells them how (delays, failures, framing).
"""

import socket
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests.support.checks import assert_json_error
from tests.support.ports import refused_port
from tests.support.rawhttp import RawConnection, request_bytes
from tests.support.upstream import Upstream


def part(key: str, upstream: str, path: str | None = None, **fields) -> dict:
    return {"key": key, "upstream": upstream, **({"path": path} if path is not None else {}), **fields}


@pytest.fixture(scope="module")
def orders() -> Iterator[Upstream]:
    """The second upstream server of the module (module_upstream is the first, "users")."""
    with Upstream() as server:
        yield server


@pytest.fixture(autouse=True)
def _orders_receive_only_valid_http(orders) -> Iterator[None]:
    before = len(orders.stats.protocol_errors)
    yield
    assert orders.stats.protocol_errors[before:] == [], "the orders upstream received malformed HTTP"


@pytest.fixture(scope="module")
def gw(module_gateways, module_upstream, orders):
    return module_gateways.start({
        "upstreams": [module_upstream.config("users"), orders.config("orders"),
                      {"name": "nowhere", "servers": [f"127.0.0.1:{refused_port()}"]}],
        "routes": [
            {"path": "/dashboard", "aggregate": [
                part("user", "users", "/users/me", timeout="5s", required=True),
                part("orders", "orders", "/orders?limit=5", timeout="5s", required=False),
            ], "response_headers": {"add": {"Cache-Control": "no-store"}}},
            {"path": "/parallel", "aggregate_timeout": "10s", "aggregate": [
                part("a", "users", "/parallel-a?delay=1"), part("b", "orders", "/parallel-b?delay=1"),
            ]},
            {"path": "/optional-timeout", "aggregate": [
                part("fast", "users", "/fast"),
                part("slow", "orders", "/slow?delay=6", timeout="300ms", required=False),
            ]},
            {"path": "/required-reset", "aggregate": [
                part("ok", "users", "/ok-r"), part("broken", "orders", "/broken?fail=reset"),
            ]},
            {"path": "/required-timeout", "aggregate": [
                part("ok", "users", "/ok-t"), part("slow", "orders", "/slow-req?delay=6", timeout="300ms"),
            ]},
            {"path": "/required-refused", "aggregate": [part("nobody", "nowhere", "/")]},
            {"path": "/mixed", "aggregate": [
                part("chunked", "users", "/m-chunked?frame=chunked&chunk=7"),
                part("until_close", "orders", "/m-close?frame=close"),
                part("not_json", "users", "/m-bytes?bytes=10", required=False),
                part("not_found", "orders", "/m-404?status=404", required=False),
                part("too_large", "users", "/m-large", max_size="64", required=False),
            ]},
            {"path_prefix": "/same/", "aggregate": [part("here", "users"), part("there", "orders")]},
            {"path": "/as-is", "aggregate": [
                part("number", "users", "/j1?json=%20%7B%22n%22%3A%201.50%2C%20%22e%22%3A%20%22%5Cu00e9%22%7D%20"),
                part("list", "orders", "/j2?json=%5B1%2C%20%22two%22%2C%20null%5D"),
                part("broken", "users", "/j3?json=%7B%22n%22%3A", required=False),
            ]},
        ],
    })


def get(gw, path: str, headers: dict | None = None, timeout_s: float = 20.0) -> httpx.Response:
    return httpx.get(gw.url(path), headers=headers, timeout=timeout_s)


def header(echo: dict, name: str) -> list[str]:
    """The values of header ``name`` as the upstream received it (from its JSON echo)."""
    return [v for k, v in echo["headers"] if k.lower() == name.lower()]


def test_parts_are_merged_under_their_keys(gw, module_upstream, orders):
    response = get(gw, "/dashboard?x=1", {"Accept-Encoding": "gzip", "Accept": "text/html",
                                          "Authorization": "Bearer t0ken"})
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.headers["cache-control"] == "no-store"  # the route's response_headers apply
    doc = response.json()
    assert list(doc) == ["user", "orders"]  # config order, no "errors": every part answered
    user, order = doc["user"], doc["orders"]
    assert user["target"] == "/users/me?x=1"  # the client's query string is appended
    assert order["target"] == "/orders?limit=5&x=1"
    assert user["method"] == order["method"] == "GET"
    assert module_upstream.requests_with("/users/me?x=1") and orders.requests_with("/orders?limit=5&x=1")
    assert not module_upstream.requests_with("/orders") and not orders.requests_with("/users/me")
    for echo in (user, order):
        assert header(echo, "Authorization") == ["Bearer t0ken"]  # client headers travel as when forwarding
        assert header(echo, "Accept") == ["application/json"]
        assert header(echo, "Accept-Encoding") == ["identity"]


def test_request_id_and_forwarded_headers_reach_every_part(gw):
    response = get(gw, "/dashboard", {"X-Request-ID": "agg-id-1", "X-Forwarded-For": "203.0.113.9"})
    assert response.headers["x-request-id"] == "agg-id-1"
    for echo in response.json().values():
        assert header(echo, "X-Request-ID") == ["agg-id-1"]
        assert header(echo, "X-Forwarded-For") == ["203.0.113.9, 127.0.0.1"]
        assert header(echo, "X-Forwarded-Proto") == ["http"]
        assert header(echo, "X-Forwarded-Host") == [f"127.0.0.1:{gw.port}"]
    generated = get(gw, "/dashboard")
    request_id = generated.headers["x-request-id"]
    assert request_id and request_id != "agg-id-1"
    assert [header(echo, "X-Request-ID") for echo in generated.json().values()] == [[request_id]] * 2


def test_parts_run_in_parallel(gw):
    started = time.monotonic()
    response = get(gw, "/parallel")
    elapsed = time.monotonic() - started
    assert response.status_code == 200
    assert [echo["target"] for echo in response.json().values()] == ["/parallel-a?delay=1", "/parallel-b?delay=1"]
    assert 1.0 <= elapsed < 1.8  # each part waits 1 s: together they took the longest, not the sum


def test_an_optional_part_that_times_out_is_null_with_an_error(gw):
    started = time.monotonic()
    response = get(gw, "/optional-timeout")
    assert time.monotonic() - started < 5.0  # not the 6 s the slow part would have taken
    assert response.status_code == 200
    doc = response.json()
    assert list(doc) == ["fast", "slow", "errors"]
    assert doc["fast"]["target"] == "/fast"
    assert doc["slow"] is None
    assert doc["errors"] == {"slow": {"status": 504, "error": "upstream timed out"}}


@pytest.mark.parametrize("path,status,message", [
    ("/required-reset", 502, "part 'broken': upstream closed the connection"),
    ("/required-timeout", 504, "part 'slow': upstream timed out"),
    ("/required-refused", 502, "part 'nobody': upstream refused the connection"),
])
def test_a_required_part_that_fails_fails_the_answer(gw, path, status, message):
    started = time.monotonic()
    response = get(gw, path, {"X-Request-ID": "fail-id"})
    assert time.monotonic() - started < 5.0  # answered when the part failed, not when the others would end
    doc = assert_json_error(response, status)
    assert doc["error"] == message
    assert doc["request_id"] == "fail-id"


def test_bodies_are_read_whatever_their_framing_and_bad_ones_fail_the_part(gw):
    doc = get(gw, "/mixed").json()
    assert doc["chunked"]["target"] == "/m-chunked?frame=chunked&chunk=7"
    assert doc["until_close"]["target"] == "/m-close?frame=close"
    assert doc["not_json"] is None and doc["not_found"] is None and doc["too_large"] is None
    assert doc["errors"] == {
        "not_json": {"status": 502, "error": "upstream answer is not JSON"},
        "not_found": {"status": 502, "error": "upstream answered 404"},
        "too_large": {"status": 502, "error": "upstream answer too large"},
    }


def test_a_part_without_path_gets_the_request_target(gw):
    doc = get(gw, "/same/thing?q=2").json()
    assert doc["here"]["target"] == doc["there"]["target"] == "/same/thing?q=2"


def test_parts_reuse_pooled_connections(gw, module_upstream, orders):
    with httpx.Client(timeout=20) as client:
        assert client.get(gw.url("/dashboard")).status_code == 200  # leaves one idle connection per upstream
        accepted = (module_upstream.stats.accepted, orders.stats.accepted)
        for _ in range(5):
            assert client.get(gw.url("/dashboard")).status_code == 200
    assert (module_upstream.stats.accepted, orders.stats.accepted) == accepted


def test_pipelined_requests_wait_for_the_aggregated_answer(gw):
    with RawConnection(gw.port) as conn:
        conn.send(request_bytes("GET", "/parallel") + request_bytes("GET", "/dashboard?n=2")
                  + request_bytes("GET", "/__fastgate_ready"))
        first, second, third = conn.read_response(), conn.read_response(), conn.read_response()
    assert list(first.json()) == ["a", "b"]
    assert second.json()["user"]["target"] == "/users/me?n=2"
    assert third.body == b"ready"


def test_part_json_is_copied_as_received(gw):
    response = get(gw, "/as-is")
    assert response.content == (b'{"number":{"n": 1.50, "e": "\\u00e9"},"list":[1, "two", null],"broken":null,'
                                b'"errors":{"broken":{"status":502,"error":"upstream answer is not JSON"}}}')


def test_head_gets_the_head_of_the_answer(gw):
    full = get(gw, "/as-is")
    with RawConnection(gw.port) as conn:
        conn.send(request_bytes("HEAD", "/as-is"))
        head = conn.read_response("HEAD")
        conn.send(request_bytes("GET", "/same/head"))
        after = conn.read_response()  # the connection stays usable: no stray body bytes
    assert head.status == 200 and head.body == b""
    assert int(head.header("Content-Length")) == len(full.content)
    assert after.json()["here"]["target"] == "/same/head"


def test_other_methods_and_request_bodies_are_refused(gw, module_upstream):
    before = len(module_upstream.stats.requests)
    with RawConnection(gw.port) as conn:
        conn.send(request_bytes("DELETE", "/dashboard"))
        refused = conn.read_response("DELETE")
        conn.send(request_bytes("GET", "/dashboard?after=1"))
        assert conn.read_response().status == 200  # a bodiless refusal keeps the connection
    assert_json_error(refused, 405)
    assert refused.header("Allow") == "GET, HEAD"
    with RawConnection(gw.port) as conn:
        conn.send(request_bytes("GET", "/dashboard", body=b"{}"))
        assert_json_error(conn.read_response(), 413)
        conn.wait_closed()  # the unread body ends the connection
    with RawConnection(gw.port) as conn:
        conn.send(request_bytes("POST", "/dashboard", body=b"x" * 10))
        assert_json_error(conn.read_response("POST"), 405)
        conn.wait_closed()
    assert len(module_upstream.stats.requests) == before + 1  # only the GET after the refusal


def test_a_client_that_leaves_mid_aggregation_cancels_its_parts(gateways, upstream):
    gw = gateways.start({
        "upstreams": [upstream.config("up")],
        "routes": [
            {"path": "/hang", "aggregate": [part("a", "up", "/hang-a?delay=2"), part("b", "up", "/hang-b?delay=2")]},
            {"path": "/quick", "aggregate": [part("a", "up", "/quick-a"), part("b", "up", "/quick-b")]},
        ],
    })
    workers = gw.worker_pids()
    for _ in range(3):
        count = len(upstream.requests_with("/hang-b"))  # before sending: the parts may arrive at once
        sock = socket.create_connection(("127.0.0.1", gw.port), timeout=10)
        sock.sendall(request_bytes("GET", "/hang"))
        upstream.wait_for(lambda s: sum("/hang-b" in r.target for r in s.requests) > count,
                          "the parts reached the upstream")
        sock.close()
    # the parts' connections were dropped, not kept for reuse: the upstream sees them all closed
    upstream.wait_for(lambda s: s.closed >= 6, "the six abandoned part connections were closed")
    with ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(lambda i: get(gw, f"/quick?i={i}"), range(8)))
    assert [r.status_code for r in answers] == [200] * 8
    assert gw.worker_pids() == workers
    assert "internal error" not in gw.log_text()
