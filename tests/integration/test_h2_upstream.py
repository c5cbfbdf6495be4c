"""HTTP/2 upstreams (``protocol = "h2"``): requests from HTTP/1.1 and HTTP/2 clients multiplexed as
streams on shared connections to a real HTTP/2 server (tests/support/h2_upstream.py, on the h2
library), in cleartext (h2c) and over TLS with ALPN; GOAWAY, resets, timeouts and trailers.

Clients: curl (HTTP/1.1, --http2-prior-knowledge), httpx (HTTP/1.1 and HTTP/2).
"""

import hashlib
import json
import socket
import ssl
import subprocess
from concurrent.futures import ThreadPoolExecutor

import h2.config
import h2.connection
import h2.events
import h2.settings
import httpx
import pytest
import trustme

from tests.support.gateway import Gateway
from tests.support.h2_upstream import H2Upstream
from tests.support.raw_upstream import RawUpstream
from tests.support.upstream import pattern_sha256
from tests.support.wait import wait_until


@pytest.fixture
def h2_upstream():
    with H2Upstream() as server:
        yield server


class H2cGateway(Gateway):
    """The test gateway whose plain listener also takes h2c with prior knowledge."""

    def full_config(self, config: dict) -> dict:
        full = super().full_config(config)
        full["listeners"] = [{**full["listeners"][0], "http2": True}]
        return full


def start(gateways, upstream_config: dict, **route: object) -> H2cGateway:
    gw = H2cGateway(gateways.base_dir / f"gw{len(gateways.started)}", {
        "upstreams": [upstream_config],
        "routes": [{"name": "h2", "path_prefix": "/", "upstream": upstream_config["name"], **route}],
    })
    gateways.started.append(gw)
    return gw.start()


def curl(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["curl", "-sS", "--max-time", "20", *args], capture_output=True, timeout=30)


# -- requests through to the HTTP/2 upstream ------------------------------------------------

def test_http1_client_to_h2_upstream(gateways, h2_upstream):
    gw = start(gateways, h2_upstream.config())
    result = curl("-i", gw.url("/hello?x=1"), "-H", "Connection: keep-alive, X-Hop", "-H", "X-Hop: secret",
                  "-H", "TE: gzip")
    assert result.returncode == 0, result.stderr
    head, _, body = result.stdout.decode().partition("\r\n\r\n")
    assert head.startswith("HTTP/1.1 200")
    echo = json.loads(body)
    assert echo["method"] == "GET" and echo["path"] == "/hello"
    assert echo["authority"] == f"127.0.0.1:{gw.port}"  # the Host became :authority
    names = {k for k, _ in echo["headers"]}
    assert not names & {"host", "connection", "keep-alive", "te", "transfer-encoding", "x-hop", "upgrade"}
    assert dict(echo["headers"])["x-forwarded-for"] == "127.0.0.1"

    # a chunked upload is de-chunked into DATA; a body with Content-Length goes as it is
    body = b"abcdefgh" * 40_000
    for extra in (["-H", "Transfer-Encoding: chunked"], []):
        result = subprocess.run(["curl", "-sS", "--max-time", "20", *extra, "--data-binary", "@-", gw.url("/upload")],
                                input=body, capture_output=True, timeout=30)
        assert result.returncode == 0, result.stderr
        echo = json.loads(result.stdout)
        assert echo["body_len"] == len(body)
        assert echo["body_sha256"] == hashlib.sha256(body).hexdigest()

    # a response without content-length reaches an HTTP/1.1 client chunked, whole
    with httpx.Client(timeout=20) as client:
        response = client.get(gw.url("/big?bytes=3000000"))
    assert response.status_code == 200 and response.headers["transfer-encoding"] == "chunked"
    assert hashlib.sha256(response.content).hexdigest() == pattern_sha256(3_000_000)


def test_h2_client_to_h2_upstream(gateways, h2_upstream):
    gw = start(gateways, h2_upstream.config())
    with httpx.Client(http1=False, http2=True, timeout=20) as client:
        response = client.get(gw.url("/big?bytes=1500000"))
        assert response.http_version == "HTTP/2" and response.status_code == 200
        assert hashlib.sha256(response.content).hexdigest() == pattern_sha256(1_500_000)
        body = bytes(range(256)) * 1000
        response = client.post(gw.url("/post"), content=iter([body[:100_000], body[100_000:]]))
        echo = response.json()
        assert echo["method"] == "POST" and echo["body_len"] == len(body)
        assert echo["body_sha256"] == hashlib.sha256(body).hexdigest()


def test_concurrent_requests_share_the_configured_connections(gateways, h2_upstream):
    gw = start(gateways, h2_upstream.config(max_connections=2, max_streams_per_connection=8,
                                            max_pending_requests=200))

    def fetch(i: int) -> int:
        with httpx.Client(timeout=20) as client:
            response = client.get(gw.url(f"/m{i}?delay=0.3"))
            assert response.json()["path"] == f"/m{i}"
            return response.status_code

    with ThreadPoolExecutor(40) as pool:
        statuses = list(pool.map(fetch, range(40)))
    assert statuses == [200] * 40
    stats = h2_upstream.read(lambda s: (s.accepted, len(s.requests), s.most_in_flight))
    assert stats[1] == 40
    assert stats[0] <= 2  # at most max_connections, however many requests were in flight
    assert 2 <= stats[2] <= 8  # streams did share a connection, within max_streams_per_connection


def test_server_max_concurrent_streams_is_respected(gateways):
    with H2Upstream(max_streams=3) as server:
        gw = start(gateways, server.config(max_connections=1, max_pending_requests=100))
        with ThreadPoolExecutor(12) as pool:
            statuses = list(pool.map(lambda i: httpx.get(gw.url(f"/s{i}?delay=0.2"), timeout=20).status_code,
                                     range(12)))
        assert statuses == [200] * 12
        assert server.read(lambda s: (s.accepted, s.most_in_flight)) == (1, 3)


# -- TLS ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    directory = tmp_path_factory.mktemp("h2pki")
    authority = trustme.CA()
    leaf = authority.issue_cert("upstream.test")
    authority.cert_pem.write_to_path(str(directory / "ca.pem"))
    return authority, leaf, directory


def server_context(leaf) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    leaf.configure_cert(context)
    return context


def test_https_upstream_speaks_h2_by_alpn(gateways, pki):
    authority, leaf, directory = pki
    with H2Upstream(tls=server_context(leaf)) as server:
        gw = start(gateways, server.config(tls=True, tls_ca_file=str(directory / "ca.pem"),
                                           tls_server_name="upstream.test"))
        response = httpx.get(gw.url("/secure"), timeout=20)
        assert response.status_code == 200
        echo = response.json()
        assert echo["path"] == "/secure"
        assert dict(echo["headers"])["x-forwarded-proto"] == "http"


def test_https_upstream_that_does_not_select_h2_is_a_502(gateways, pki):
    authority, leaf, directory = pki
    with H2Upstream(tls=server_context(leaf), alpn=("http/1.1",)) as server:
        gw = start(gateways, server.config(tls=True, tls_ca_file=str(directory / "ca.pem"),
                                           tls_server_name="upstream.test"))
        response = httpx.get(gw.url("/secure"), timeout=20)
        assert response.status_code == 502
        assert response.json()["error"].startswith("cannot connect to upstream")
        assert server.read(lambda s: len(s.requests)) == 0
        assert "did not select h2" in gw.log_text()


# -- ends: GOAWAY, resets, timeouts -----------------------------------------------------------

def test_goaway_lets_earlier_streams_finish_and_sends_the_others_again(gateways):
    with H2Upstream(goaway_after=5, goaway_delay_s=0.5) as server:
        gw = start(gateways, server.config(max_connections=4, max_streams_per_connection=50, retries=0))

        def fetch(i: int):
            response = httpx.get(gw.url(f"/g{i}?delay=0.2"), timeout=20)
            return response.status_code, response.json()["path"] if response.status_code == 200 else None

        with ThreadPoolExecutor(12) as pool:
            results = list(pool.map(fetch, range(12)))
        assert results == [(200, f"/g{i}") for i in range(12)]
        stats = server.read(lambda s: (s.accepted, s.answered_after_goaway, s.ignored_after_goaway))
    assert stats[0] >= 2  # the requests the GOAWAY refused went on another connection
    assert stats[1] >= 1  # streams up to the GOAWAY's last id were answered after it, on the old connection


def test_stream_reset_by_the_upstream(gateways, h2_upstream):
    gw = start(gateways, h2_upstream.config(retries=0))
    response = httpx.get(gw.url("/r?reset=1"), timeout=20)
    assert response.status_code == 502
    assert response.json()["error"] == "upstream reset the stream"
    # the connection and its other streams are unharmed
    assert httpx.get(gw.url("/after"), timeout=20).status_code == 200
    assert h2_upstream.read(lambda s: s.accepted) == 1


def test_an_idempotent_request_reset_by_one_server_goes_to_another(gateways):
    with H2Upstream(always="reset=1") as broken, H2Upstream() as sound:
        config = {"name": "pair", "protocol": "h2", "servers": [broken.address, sound.address], "retries": 1,
                  "eject_after_failures": 0}
        gw = start(gateways, config)
        for i in range(4):
            response = httpx.get(gw.url(f"/x{i}"), timeout=20)
            assert response.status_code == 200 and response.json()["path"] == f"/x{i}"
        assert broken.read(lambda s: len(s.requests)) >= 2  # it reset each request it got...
        assert sound.read(lambda s: len(s.requests)) == 4  # ...which then went to the other server


def test_a_silent_stream_times_out_alone(gateways, h2_upstream):
    gw = start(gateways, h2_upstream.config(read_timeout="1s", retries=0))
    with ThreadPoolExecutor(2) as pool:
        slow = pool.submit(httpx.get, gw.url("/quiet?silent=1"), timeout=20)
        fast = pool.submit(httpx.get, gw.url("/quick?delay=0.2"), timeout=20)
        assert fast.result().status_code == 200
        response = slow.result()
    assert response.status_code == 504
    assert response.json()["error"] == "upstream timed out"
    assert httpx.get(gw.url("/again"), timeout=20).status_code == 200
    assert h2_upstream.read(lambda s: s.accepted) == 1  # the timed-out stream was reset, not the connection


# -- trailers ---------------------------------------------------------------------------

def test_response_trailers_reach_http1_and_h2_clients(gateways, h2_upstream):
    gw = start(gateways, h2_upstream.config())
    expected = pattern_sha256(200_000)
    # HTTP/1.1: the last chunk carries them
    result = curl("-sS", "--raw", gw.url("/t?bytes=200000&trailers=1"))
    assert result.returncode == 0, result.stderr
    tail = result.stdout[-200:].decode("latin-1")
    assert tail.endswith(f"0\r\nx-checksum: {expected}\r\nx-end: yes\r\n\r\n")
    # HTTP/2: a HEADERS frame after the DATA
    result = curl("--http2-prior-knowledge", "-v", "-o", "/dev/null", gw.url("/t?bytes=200000&trailers=1"))
    assert result.returncode == 0, result.stderr
    assert f"x-checksum: {expected}" in result.stderr.decode()


def test_health_checks_of_an_h2_upstream_speak_http2(gateways):
    with H2Upstream(always="status=503") as ill, H2Upstream() as well:
        config = {"name": "pair", "protocol": "h2", "servers": [ill.address, well.address], "retries": 0,
                  "health": {"path": "/healthz", "interval": "300ms", "timeout": "250ms", "rise": 1, "fall": 1}}
        gw = start(gateways, config)
        ill.wait_for(lambda s: sum(r.path == "/healthz" for r in s.requests) >= 2, "no HTTP/2 health checks")
        wait_until(lambda: "is down (checks failed in a row: 1, last: status 503)" in gw.log_text(), "ill is down")

        def work_reaching_ill() -> int:
            return sum(r.path.startswith("/w") for r in ill.read(lambda s: list(s.requests)))

        # the worker follows the checker's verdict on its clock tick: then no request reaches ill
        wait_until(lambda: [httpx.get(gw.url("/w"), timeout=20).status_code for _ in range(4)] == [200] * 4,
                   "requests avoid the server that is down")
        before = work_reaching_ill()
        assert [httpx.get(gw.url(f"/w{i}"), timeout=20).status_code for i in range(6)] == [200] * 6
        assert work_reaching_ill() == before


def test_stalled_clients_stall_only_their_own_streams(gateways, h2_upstream):
    """Forty streams whose client never opens their windows, and one it reads, all on one upstream
    connection: each stalled stream holds back its own window only (the connection's is given back),
    so the read one completes. Were the connection window withheld, 40 stalled streams would hold
    more than all of it and nothing more would flow on the connection."""
    gw = start(gateways, h2_upstream.config(max_connections=1, max_streams_per_connection=100))
    size = 2_000_000
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding=None))
    conn.local_settings = h2.settings.Settings(client=True, initial_values={
        h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 0})  # no stream gets DATA until we open it
    conn.initiate_connection()
    conn.increment_flow_control_window(2**31 - 1 - 65535)
    stalled = [1 + 2 * i for i in range(40)]
    wanted = 1 + 2 * 40
    body = bytearray()
    with socket.create_connection(("127.0.0.1", gw.port), timeout=20) as sock:
        for stream_id in [*stalled, wanted]:
            conn.send_headers(stream_id, [(b":method", b"GET"), (b":scheme", b"http"),
                                          (b":authority", b"127.0.0.1"), (b":path", b"/big?bytes=%d" % size)],
                              end_stream=True)
        sock.sendall(conn.data_to_send())
        h2_upstream.wait_for(lambda s: len(s.requests) == 41, "all 41 requests upstream")
        conn.increment_flow_control_window(2**31 - 1 - 65535, wanted)
        sock.sendall(conn.data_to_send())
        ended = False
        while not ended:
            data = sock.recv(65536)
            assert data, "the gateway closed the connection"
            for event in conn.receive_data(data):
                if isinstance(event, h2.events.DataReceived) and event.stream_id == wanted:
                    body += event.data
                    conn.acknowledge_received_data(event.flow_controlled_length, wanted)
                elif isinstance(event, h2.events.StreamEnded) and event.stream_id == wanted:
                    ended = True
                elif isinstance(event, h2.events.StreamReset) and event.stream_id == wanted:
                    raise AssertionError("the wanted stream was reset")
            sock.sendall(conn.data_to_send())
    assert hashlib.sha256(body).hexdigest() == pattern_sha256(size)
    assert h2_upstream.read(lambda s: s.accepted) == 1


def test_http1_upstream_chunked_trailers_reach_an_h2_client(gateways):
    answer = (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: x-checksum\r\n\r\n"
              b"5\r\nhello\r\n6\r\n world\r\n0\r\nX-Checksum: abc\r\nContent-Length: 99\r\n\r\n")
    with RawUpstream(answers={"/trailed": answer}) as server:
        gw = start(gateways, server.config())
        result = curl("--http2-prior-knowledge", "-v", gw.url("/trailed"))
    assert result.returncode == 0, result.stderr
    assert result.stdout == b"hello world"
    log = result.stderr.decode()
    assert "< x-checksum: abc" in log  # as trailing HEADERS, its name in lower case
    assert "< content-length: 99" not in log  # a framing field is never relayed as a trailer


def test_request_trailers_of_an_h2_client_reach_the_h2_upstream(gateways, h2_upstream):
    gw = start(gateways, h2_upstream.config(), request_buffering=False)
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding=None))
    conn.initiate_connection()
    conn.send_headers(1, [(b":method", b"POST"), (b":scheme", b"http"), (b":authority", b"127.0.0.1"),
                          (b":path", b"/with-trailers")])
    conn.send_data(1, b"part one, ")
    conn.send_data(1, b"part two")
    conn.send_headers(1, [(b"x-checksum", b"12345"), (b"x-count", b"2")], end_stream=True)
    answer = bytearray()
    with socket.create_connection(("127.0.0.1", gw.port), timeout=20) as sock:
        sock.sendall(conn.data_to_send())
        ended = False
        while not ended:
            data = sock.recv(65536)
            assert data, "the gateway closed the connection"
            for event in conn.receive_data(data):
                if isinstance(event, h2.events.DataReceived):
                    answer += event.data
                    conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                elif isinstance(event, (h2.events.StreamEnded, h2.events.StreamReset)):
                    ended = True
            sock.sendall(conn.data_to_send())
    echo = json.loads(answer)
    assert echo["body_len"] == len(b"part one, part two")
    assert echo["trailers"] == [["x-checksum", "12345"], ["x-count", "2"]]
