"""Request events through the real gateway (2 workers) to a real nats-server and a real redis-server.

What must hold: every request yields exactly one event, with the request's
method, path, status, route and request id; with the sink down, killed or
frozen, every request still succeeds, no worker dies, what is kept is
bounded by max_buffer per worker, the rest is counted as dropped and the
outage is logged once per worker; once the sink is back, events flow again.
"""

import json
import re
import signal
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests.support.metrics import settled, value
from tests.support.nats_server import NatsServer, NatsSubscriber
from tests.support.redis_server import RedisServer
from tests.support.wait import wait_until

SUBJECT = "fastgate.requests"
STREAM = "fg:events"
WARNING = "events: cannot publish to"
RECOVERED = " again ("
BUFFER = 50
"""max_buffer in the outage tests: more than the 40 requests sent after recovery, which a worker
may receive within one clock tick, and far fewer than the requests sent during the outage."""
OUTAGE_REQUESTS = 200
LATENCIES: dict[str, list[float]] = {}
"""Seconds each request took, by the tag of its batch."""


@pytest.fixture(scope="module", autouse=True)
def report_latencies():
    """Not a check: how long requests took, by batch: sink up, down, killed, frozen (shown with -s)."""
    yield
    for tag, seconds in LATENCIES.items():
        ordered = sorted(seconds)
        print(f"\nevents {tag}: {len(ordered)} requests, median {ordered[len(ordered) // 2] * 1000:.1f} ms, "
              f"max {ordered[-1] * 1000:.1f} ms", end="")


def events_gateway(gateways, upstream, events: dict, workers: int = 2):
    return gateways.start({
        "upstreams": [upstream.config()],
        "routes": [{"name": "api", "path_prefix": "/api/", "upstream": "up"},
                   {"name": "hello", "path": "/hello", "respond": {"status": 200, "body": "hello\n"}}],
        "events": events,
    }, workers=workers)


def send_requests(gw, tag: str, n: int) -> dict[str, dict]:
    """``n`` requests, 8 at a time, each on a new connection (so both workers serve some), of four kinds:
    proxied GET and POST, a local answer, no route (404). All must get their expected status.
    Returns what each request's event must say, by request id."""
    kinds = [("GET", "/api/{tag}/{i}?q={i}", 200, "api"), ("POST", "/api/{tag}/{i}", 200, "api"),
             ("GET", "/hello", 200, "hello"), ("GET", "/nowhere/{tag}/{i}", 404, "")]

    def one(i: int) -> tuple[str, dict]:
        method, path, status, route = kinds[i % len(kinds)]
        path = path.format(tag=tag, i=i)
        request_id = f"{tag}-{i}"
        started = time.monotonic()
        response = httpx.request(method, gw.url(path), headers={"X-Request-ID": request_id},
                                 content=b"x" * i if method == "POST" else None, timeout=10)
        LATENCIES.setdefault(tag, []).append(time.monotonic() - started)
        assert response.status_code == status, (path, response.status_code, response.text)
        return request_id, {"method": method, "path": path, "status": status, "route": route,
                            "request_id": request_id}

    with ThreadPoolExecutor(8) as pool:  # a connection per request: no client shared across threads
        return dict(pool.map(one, range(n)))


def assert_exactly_once(events: list[dict], expected: dict[str, dict]) -> None:
    """Every expected request has exactly one event among ``events``, with its fields."""
    tag = next(iter(expected)).rpartition("-")[0] + "-"
    mine = [e for e in events if e["request_id"].startswith(tag)]
    assert sorted(e["request_id"] for e in mine) == sorted(expected)
    for event in mine:
        want = expected[event["request_id"]]
        assert {k: event.get(k, "") for k in want} == want  # empty fields are left out
        assert event["client_ip"] == "127.0.0.1" and event["protocol"] == "HTTP/1.1"


def ids(events: list[dict]) -> set[str]:
    return {e["request_id"] for e in events}


def stream_events(server: RedisServer) -> list[dict]:
    """The stream's entries (XRANGE, read with redis-cli): each one's field "event", decoded."""
    entries = json.loads(server.cli("--json", "XRANGE", STREAM, "-", "+") or "[]")
    events = []
    for _, fields in entries:
        pairs = fields.items() if isinstance(fields, dict) else zip(fields[::2], fields[1::2])
        assert [name for name, _ in pairs] == ["event"]
        events.append(json.loads(fields["event"] if isinstance(fields, dict) else fields[1]))
    return events


def wait_until_outage_logged(gw, workers: int = 2) -> None:
    """Wait until each worker logged the outage (one warning each), then that it publishes again."""
    wait_until(lambda: gw.log_text().count(WARNING) >= workers, "every worker logged the outage")
    assert gw.log_text().count(WARNING) == workers  # rate-limited: once per worker


def wait_until_published_again(gw, workers: int = 2) -> None:
    """Wait until every worker publishes again (it reconnects with a back-off of up to 5 s)."""
    wait_until(lambda: gw.log_text().count(RECOVERED) >= workers, "every worker publishes again", timeout_s=40.0)


def exit_counts(gw) -> tuple[int, int]:
    """Records published and dropped, summed over the workers' exit lines in the error log."""
    lines = re.findall(r"events: (\d+) records published to .*, (\d+) dropped", gw.log_text())
    return sum(int(p) for p, _ in lines), sum(int(d) for _, d in lines)


def test_nats_subscriber_gets_one_event_per_request(gateways, upstream):
    with NatsServer(user="fastgate", password="s3cret") as server, NatsSubscriber(server.url, SUBJECT) as sub:
        gw = events_gateway(gateways, upstream, {"sink": "nats", "url": server.url, "subject": SUBJECT,
                                                 "max_batch": 7})
        expected = send_requests(gw, "nats", 80)
        wait_until(lambda: expected.keys() <= ids(sub.messages), "every request's event arrives")
        counted = settled(gw)
        assert value(counted, "fastgate_events_published_total") == len(sub.messages)
        assert value(counted, "fastgate_log_records_dropped_total") == 0
        gw.stop()
        sub.sync()
        assert_exactly_once(sub.messages, expected)
        published, dropped = exit_counts(gw)
        assert (published, dropped) == (len(sub.messages), 0)
        assert WARNING not in gw.log_text()


def test_redis_stream_gets_one_entry_per_request(gateways, upstream):
    with RedisServer(password="s3cret") as server:
        gw = events_gateway(gateways, upstream, {"sink": "redis", "url": server.url, "subject": STREAM,
                                                 "max_batch": 7})
        expected = send_requests(gw, "redis", 80)
        wait_until(lambda: expected.keys() <= ids(stream_events(server)), "every request's entry arrives")
        server.cli("SCRIPT", "FLUSH")  # the next batch meets NOSCRIPT: the script is loaded again
        after_flush = send_requests(gw, "flushed", 40)
        wait_until(lambda: after_flush.keys() <= ids(stream_events(server)), "the later entries arrive")
        gw.stop()
        events = stream_events(server)
        assert_exactly_once(events, expected)
        assert_exactly_once(events, after_flush)
        assert exit_counts(gw) == (len(events), 0)
        assert WARNING not in gw.log_text()


def test_redis_stream_is_trimmed_to_about_stream_max_len(gateways, upstream):
    with RedisServer() as server:
        gw = events_gateway(gateways, upstream, {"sink": "redis", "url": server.url, "subject": STREAM,
                                                 "stream_max_len": 10})
        with httpx.Client(timeout=10) as client:
            assert all(client.get(gw.url("/hello")).status_code == 200 for _ in range(400))
        gw.stop()
        published, _ = exit_counts(gw)
        length = int(server.cli("XLEN", STREAM))
        # MAXLEN ~ trims whole nodes of 100 entries: the stream keeps fewer than 10 + 2 nodes
        assert published >= 400 and 10 <= length < 210


def test_records_buffered_at_exit_are_sent(gateways, upstream):
    with RedisServer() as server:
        gw = events_gateway(gateways, upstream, {"sink": "redis", "url": server.url, "subject": STREAM})
        expected = send_requests(gw, "last", 40)
        gw.stop()  # right away: what the clock tick has not flushed yet goes in the workers' last attempt
        assert_exactly_once(stream_events(server), expected)


def test_redis_over_tls_with_a_private_ca(gateways, upstream):
    with RedisServer(tls=True) as server:
        gw = events_gateway(gateways, upstream, {"sink": "redis", "url": server.url, "subject": STREAM,
                                                 "tls_ca_file": server.ca_file})
        expected = send_requests(gw, "tls", 20)
        wait_until(lambda: expected.keys() <= ids(stream_events(server)), "every request's entry arrives")
        gw.stop()
        assert_exactly_once(stream_events(server), expected)


def test_nats_over_tls_with_a_private_ca(gateways, upstream):
    with NatsServer(tls=True) as server, NatsSubscriber(server.url, SUBJECT, ca_file=server.ca_file) as sub:
        gw = events_gateway(gateways, upstream, {"sink": "nats", "url": server.url, "subject": SUBJECT,
                                                 "tls_ca_file": server.ca_file})
        expected = send_requests(gw, "tls", 20)
        wait_until(lambda: expected.keys() <= ids(sub.messages), "every request's event arrives")
        gw.stop()
        sub.sync()
        assert_exactly_once(sub.messages, expected)


def test_a_reload_loses_and_doubles_no_event(gateways, upstream):
    with NatsServer() as server, NatsSubscriber(server.url, SUBJECT) as sub:
        gw = events_gateway(gateways, upstream, {"sink": "nats", "url": server.url, "subject": SUBJECT})
        old_workers = gw.worker_pids()
        expected = send_requests(gw, "gen1", 40)  # the old workers' last events go at their exit
        gw.signal(signal.SIGHUP)
        wait_until(lambda: len(pids := gw.worker_pids()) == 2 and not pids & old_workers,
                   "the new generation alone serves")
        expected |= send_requests(gw, "gen2", 40)
        wait_until(lambda: expected.keys() <= ids(sub.messages), "every request's event arrives")
        gw.stop()
        sub.sync()
        assert_exactly_once(sub.messages, {k: v for k, v in expected.items() if k.startswith("gen1-")})
        assert_exactly_once(sub.messages, {k: v for k, v in expected.items() if k.startswith("gen2-")})


def test_requests_succeed_while_redis_is_down_and_events_flow_once_it_is_up(gateways, upstream):
    server = RedisServer(password="s3cret")  # its port is chosen, nothing listens there yet
    try:
        gw = events_gateway(gateways, upstream, {"sink": "redis", "url": server.url, "subject": STREAM,
                                                 "max_buffer": BUFFER, "timeout": "500ms"})
        workers = gw.worker_pids()
        send_requests(gw, "down", OUTAGE_REQUESTS)  # each asserts its status
        wait_until_outage_logged(gw)
        assert gw.worker_pids() == workers and len(workers) == 2
        server.start()
        wait_until_published_again(gw)
        expected = send_requests(gw, "up", 40)
        wait_until(lambda: expected.keys() <= ids(stream_events(server)), "the new requests' entries arrive")
        gw.stop()
        events = stream_events(server)
        assert_exactly_once(events, expected)
        early = [e for e in events if not e["request_id"].startswith("up-")]
        assert 1 <= len(early) <= 2 * BUFFER  # kept while down: at most max_buffer per worker
        published, dropped = exit_counts(gw)
        assert published == len(events)
        assert dropped >= OUTAGE_REQUESTS - 2 * BUFFER
        assert gw.log_text().count(WARNING) == 2  # one per worker: the outage was shorter than a minute
        assert "s3cret" not in gw.log_text()
    finally:
        server.close()


def test_nats_killed_mid_run_then_restarted(gateways, upstream):
    with NatsServer() as server:
        gw = events_gateway(gateways, upstream, {"sink": "nats", "url": server.url, "subject": SUBJECT,
                                                 "max_buffer": BUFFER, "timeout": "500ms"})
        workers = gw.worker_pids()
        with NatsSubscriber(server.url, SUBJECT) as sub:
            before = send_requests(gw, "before", 40)
            wait_until(lambda: before.keys() <= ids(sub.messages), "the first requests' events arrive")
        server.kill()
        send_requests(gw, "during", OUTAGE_REQUESTS)
        wait_until_outage_logged(gw)
        assert gw.worker_pids() == workers
        server.start()
        with NatsSubscriber(server.url, SUBJECT) as sub:
            wait_until_published_again(gw)
            after = send_requests(gw, "after", 40)
            wait_until(lambda: after.keys() <= ids(sub.messages), "the new requests' events arrive")
            gw.stop()
            sub.sync()
            assert_exactly_once(sub.messages, after)
        _, dropped = exit_counts(gw)
        assert dropped >= OUTAGE_REQUESTS - 2 * BUFFER


def test_requests_succeed_while_redis_is_frozen(gateways, upstream):
    with RedisServer() as server:
        gw = events_gateway(gateways, upstream, {"sink": "redis", "url": server.url, "subject": STREAM,
                                                 "max_buffer": BUFFER, "timeout": "300ms"})
        workers = gw.worker_pids()
        server.freeze()  # connections stay open, nothing is answered
        send_requests(gw, "frozen", OUTAGE_REQUESTS)
        wait_until_outage_logged(gw)
        assert "timed out" in gw.log_text()
        assert gw.worker_pids() == workers
        server.thaw()
        wait_until_published_again(gw)
        expected = send_requests(gw, "thawed", 40)
        wait_until(lambda: expected.keys() <= ids(stream_events(server)), "the new requests' entries arrive")
        gw.stop()
        assert_exactly_once(stream_events(server), expected)
