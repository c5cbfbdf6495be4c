"""HTTP/2 downstream: h2c with prior knowledge on a plain listener (``http2 = true``) and h2 by ALPN on a
TLS listener, each stream its own proxy session to the HTTP/1.1 test upstream.

Clients: curl (--http2-prior-knowledge, --http2 over TLS), httpx[http2], h2load, and the h2 library's
client side over a raw socket for frames no polite client sends.
"""

import asyncio
import hashlib
import json
import re
import shutil
import signal
import socket
import ssl
import subprocess
import time
from pathlib import Path

import h2.config
import h2.connection
import h2.events
import httpx
import pytest
import trustme

from tests.support.certs import site_pki
from tests.support.gateway import Gateway
from tests.support.ports import free_port
from tests.support.upstream import Upstream, pattern_sha256


class H2Gateway(Gateway):
    """The test gateway with ``http2 = true`` on its plain listener and a TLS listener (h2 offered by default)."""

    def __init__(self, directory: Path, config: dict, workers: int = 1, tls_http2: bool | None = None) -> None:
        super().__init__(directory, config, workers)
        self.tls_port = 0
        self.tls_http2 = tls_http2

    def start(self) -> "H2Gateway":
        self.tls_port = free_port()
        return super().start()

    def full_config(self, config: dict) -> dict:
        full = super().full_config(config)
        tls = {"address": f"127.0.0.1:{self.tls_port}", "name": "secure",
               "tls": {"certificates": [{"cert": "site.pem", "key": "site.key"}]}}
        if self.tls_http2 is not None:
            tls["http2"] = self.tls_http2
        full["listeners"] = [{**full["listeners"][0], "http2": True}, tls]
        return full


@pytest.fixture(scope="module")
def ca(tmp_path_factory) -> tuple[trustme.CA, Path]:
    directory = tmp_path_factory.mktemp("h2pki")
    return site_pki(directory), directory


def start(gateways, ca, upstream: Upstream, config: dict | None = None, tls_http2: bool | None = None) -> H2Gateway:
    config = config or {"upstreams": [upstream.config()],
                        "routes": [{"name": "small", "path_prefix": "/small", "upstream": "up",
                                    "max_body_size": "100"},
                                   {"name": "echo", "path_prefix": "/echo", "upstream": "up"}]}
    gw = H2Gateway(gateways.base_dir / f"gw{len(gateways.started)}", config, tls_http2=tls_http2)
    for ext in ("pem", "key"):
        shutil.copy(ca[1] / f"site.{ext}", gw.dir / f"site.{ext}")
    gateways.started.append(gw)
    return gw.start()


def curl(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["curl", "-sS", "--max-time", "20", *args], capture_output=True, timeout=30)


def curl_h2c(gw: H2Gateway, path: str, *args: str) -> subprocess.CompletedProcess:
    return curl("--http2-prior-knowledge", *args, gw.url(path))


def curl_tls(gw: H2Gateway, ca, path: str, *args: str) -> subprocess.CompletedProcess:
    return curl("--http2", "--cacert", str(ca[1] / "ca.pem"), "--resolve", f"site.test:{gw.tls_port}:127.0.0.1",
                *args, f"https://site.test:{gw.tls_port}{path}")


def headers_of(echo: dict) -> dict:
    return {k.lower(): v for k, v in echo["headers"]}


# -- requests through to the upstream ------------------------------------------------------

@pytest.mark.parametrize("transport", ["h2c", "tls"])
def test_get_and_post_reach_the_upstream(gateways, ca, upstream, transport):
    gw = start(gateways, ca, upstream)

    def run(path, *args):
        result = (curl_h2c(gw, path, "-w", "\n%{http_version}", *args) if transport == "h2c"
                  else curl_tls(gw, ca, path, "-w", "\n%{http_version}", *args))
        assert result.returncode == 0, result.stderr
        body, _, version = result.stdout.decode().rpartition("\n")
        assert version == "2"
        return json.loads(body)

    echo = run("/echo/get?x=1", "-H", "Cookie: a=1", "-H", "Cookie: b=2")
    assert echo["method"] == "GET" and echo["target"] == "/echo/get?x=1"
    headers = headers_of(echo)
    assert headers["x-forwarded-proto"] == ("http" if transport == "h2c" else "https")
    assert headers["host"].startswith("127.0.0.1" if transport == "h2c" else "site.test")
    assert headers["cookie"] == "a=1; b=2"

    # a body with content-length
    echo = run("/echo/post-cl", "--data-binary", "hello world")
    assert echo["method"] == "POST" and echo["body"] == "hello world"
    assert headers_of(echo)["content-length"] == "11"

    # a body without content-length: relayed chunked
    echo = run("/echo/post-chunked", "--data-binary", "@-", "-H", "Content-Length:", "-H", "Transfer-Encoding:")
    assert echo["method"] == "POST"
    assert echo["target"] == "/echo/post-chunked"
    received = upstream.wait_request("/echo/post-cl")
    assert received.body == b"hello world"


def test_body_without_content_length_is_relayed_chunked(gateways, ca, upstream):
    gw = start(gateways, ca, upstream)
    body = b"x" * 300_000
    with httpx.Client(http1=False, http2=True, timeout=20) as client:
        def parts():
            for i in range(0, len(body), 65536):
                yield body[i:i + 65536]
        response = client.post(gw.url("/echo/stream"), content=parts())
        assert response.http_version == "HTTP/2"
        assert response.status_code == 200
        echo = response.json()
    received = upstream.wait_request("/echo/stream")
    assert received.body_len == len(body)
    assert received.body_sha256 == hashlib.sha256(body).hexdigest()
    assert received.header("Transfer-Encoding") == "chunked"
    assert echo["method"] == "POST"


@pytest.mark.parametrize("length", ["cl", "none"])
def test_large_upload_arrives_whole(gateways, ca, upstream, tmp_path, length):
    gw = start(gateways, ca, upstream)
    body = bytes(range(256)) * (24 * 1024 + 3)  # ~6 MiB: many windows' worth, streamed upstream
    path = tmp_path / "upload.bin"
    path.write_bytes(body)
    if length == "cl":
        result = curl_h2c(gw, "/echo/upload-cl", "--data-binary", f"@{path}")
    else:
        with httpx.Client(http1=False, http2=True, timeout=30) as client:
            response = client.post(gw.url("/echo/upload-none"),
                                   content=(body[i:i + 100_000] for i in range(0, len(body), 100_000)))
            assert response.status_code == 200
    if length == "cl":
        assert result.returncode == 0, result.stderr
        assert json.loads(result.stdout)["body_len"] == len(body)
    received = upstream.wait_request(f"/echo/upload-{length}")
    assert received.body_len == len(body)
    assert received.body_sha256 == hashlib.sha256(body).hexdigest()


def test_404_and_413_are_json(gateways, ca, upstream):
    gw = start(gateways, ca, upstream)
    result = curl_h2c(gw, "/nowhere", "-i")
    assert result.returncode == 0, result.stderr
    text = result.stdout.decode()
    assert text.startswith("HTTP/2 404")
    body = json.loads(text.split("\r\n\r\n", 1)[1])
    assert body["status"] == 404 and body["error"]

    result = curl_h2c(gw, "/small/x", "-i", "--data-binary", "y" * 500)
    text = result.stdout.decode()
    assert text.startswith("HTTP/2 413"), result.stdout + result.stderr
    assert json.loads(text.split("\r\n\r\n", 1)[1])["status"] == 413
    # without content-length the limit holds as the body streams
    with httpx.Client(http1=False, http2=True, timeout=20) as client:
        response = client.post(gw.url("/small/y"), content=iter([b"z" * 80, b"z" * 80]))
        assert response.status_code == 413 and response.json()["status"] == 413
    assert not upstream.requests_with("/small/")


# -- streams ----------------------------------------------------------------------------

def test_a_slow_stream_does_not_delay_a_fast_one(gateways, ca, upstream):
    gw = start(gateways, ca, upstream)
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding=None))
    conn.initiate_connection()

    def request(stream_id: int, path: str) -> None:
        conn.send_headers(stream_id, [(b":method", b"GET"), (b":scheme", b"http"), (b":authority", b"127.0.0.1"),
                                      (b":path", path.encode())], end_stream=True)

    paths = {1: "/echo/slow?delay=1", **{3 + 2 * i: f"/echo/fast{i}" for i in range(5)}}
    done: dict[str, float] = {}
    bodies = {stream_id: b"" for stream_id in paths}
    with socket.create_connection(("127.0.0.1", gw.port), timeout=10) as sock:
        request(1, paths[1])
        sock.sendall(conn.data_to_send())
        began = time.monotonic()
        upstream.wait_request("/echo/slow")
        for stream_id in list(paths)[1:]:  # on the same connection, while the slow one waits
            request(stream_id, paths[stream_id])
        sock.sendall(conn.data_to_send())
        while len(done) < len(paths):
            assert time.monotonic() - began < 10, done
            for event in conn.receive_data(sock.recv(65536)):
                if isinstance(event, h2.events.DataReceived):
                    bodies[event.stream_id] += event.data
                    conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                elif isinstance(event, h2.events.StreamEnded):
                    done[paths[event.stream_id]] = time.monotonic() - began
            sock.sendall(conn.data_to_send())
    assert max(done[f"/echo/fast{i}"] for i in range(5)) < 0.8, done
    assert done["/echo/slow?delay=1"] >= 0.9, done
    for stream_id, path in paths.items():
        assert json.loads(bodies[stream_id])["target"] == path
    assert upstream.read(lambda s: s.accepted) >= 2  # the streams went upstream concurrently


def test_concurrent_streams_of_httpx_on_one_connection(gateways, ca, upstream):
    """Many requests in flight on one connection, each answered with its own response. (Timing is
    checked with the raw client above: httpx's HTTP/2 client now and then delivers a stream's response
    only when another one ends.)"""
    gw = start(gateways, ca, upstream)

    async def run() -> list[httpx.Response]:
        async with httpx.AsyncClient(http1=False, http2=True, timeout=20) as client:
            await client.get(gw.url("/echo/warm"))
            return await asyncio.gather(*(client.get(gw.url(f"/echo/many{i}?delay=0.{i % 3}")) for i in range(20)))

    responses = asyncio.run(run())
    for i, response in enumerate(responses):
        assert response.status_code == 200 and response.http_version == "HTTP/2"
        assert response.json()["target"] == f"/echo/many{i}?delay=0.{i % 3}"
    received = upstream.requests_with("/echo/many")
    assert len(received) == 20 and len({r.conn_id for r in received}) >= 2


@pytest.mark.parametrize("frame", ["cl", "chunked"])
def test_large_response_arrives_whole(gateways, ca, upstream, frame):
    gw = start(gateways, ca, upstream)
    size = 8 * 1024 * 1024 + 17
    result = curl_h2c(gw, f"/echo/big?bytes={size}&frame={frame}", "-o", "-", "-w", "")
    assert result.returncode == 0, result.stderr
    assert len(result.stdout) == size
    assert hashlib.sha256(result.stdout).hexdigest() == pattern_sha256(size)
    # over TLS as well, and with httpx's own (small) windows
    with httpx.Client(http1=False, http2=True, timeout=30) as client:
        response = client.get(gw.url(f"/echo/big2?bytes={size}&frame={frame}"))
        assert len(response.content) == size
        assert hashlib.sha256(response.content).hexdigest() == pattern_sha256(size)


def test_h2load_through_h2c(gateways, ca, upstream):
    gw = start(gateways, ca, upstream)
    result = subprocess.run(["h2load", "-n", "2000", "-c", "4", "-m", "10", gw.url("/echo/load")],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2000 succeeded, 0 failed, 0 errored" in result.stdout, result.stdout
    assert "status codes: 2000 2xx" in result.stdout, result.stdout


def test_http1_still_served_beside_h2c_and_alpn_can_be_turned_off(gateways, ca, upstream):
    gw = start(gateways, ca, upstream, tls_http2=False)
    response = httpx.get(gw.url("/echo/h1"), timeout=10)
    assert response.status_code == 200 and response.http_version == "HTTP/1.1"
    result = curl_tls(gw, ca, "/echo/tls", "-w", "\n%{http_version}")
    assert result.returncode == 0, result.stderr
    assert result.stdout.decode().rpartition("\n")[2] == "1.1"


# -- refused requests ---------------------------------------------------------------------

def h2_client_request(port: int, headers: list, body: bytes | None = None, trailers: list | None = None) -> list:
    """Send one request with hand-built frames (no header validation), return the events until the
    stream or the connection ends."""
    config = h2.config.H2Configuration(client_side=True, header_encoding=None, validate_outbound_headers=False,
                                       normalize_outbound_headers=False, validate_inbound_headers=False)
    conn = h2.connection.H2Connection(config)
    conn.initiate_connection()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(conn.data_to_send())
        conn.send_headers(1, headers, end_stream=body is None)
        if body is not None:
            conn.send_data(1, body, end_stream=trailers is None)
        if trailers is not None:
            conn.send_headers(1, trailers, end_stream=True)
        sock.sendall(conn.data_to_send())
        seen = []
        while True:
            try:
                data = sock.recv(65536)
            except ConnectionResetError:
                return seen
            if not data:
                return seen
            events = conn.receive_data(data)
            seen.extend(events)
            try:
                sock.sendall(conn.data_to_send())
            except (BrokenPipeError, ConnectionResetError):
                return seen
            if any(isinstance(e, (h2.events.StreamReset, h2.events.ConnectionTerminated, h2.events.StreamEnded))
                   for e in events):
                return seen


@pytest.mark.parametrize("bad", [
    (b"connection", b"keep-alive"),
    (b"transfer-encoding", b"chunked"),
    (b"upgrade", b"websocket"),
    (b"te", b"gzip"),
    (b"x-bad", b"a\r\nb"),
    (b"x-bad", b"a\x00b"),
    (b"x-bad", b" leading-blank"),
    (b"x-bad", b"trailing-tab\t"),
    (b"X-Upper", b"1"),
    (b"x bad", b"1"),
    (b"x:bad", b"1"),
    (b"", b"empty-name"),
    (b":path", b"/again"),
    (b":status", b"200"),
    (b":unknown", b"1"),
    (b"host", b"other.test"),
])
def test_forbidden_headers_are_refused_and_nothing_goes_upstream(gateways, ca, upstream, bad):
    """Each of these is a stream error (PROTOCOL_ERROR) that the gateway itself finds (h2's own field
    checks are off), and the request goes nowhere."""
    gw = start(gateways, ca, upstream)
    headers = [(b":method", b"GET"), (b":scheme", b"http"), (b":authority", b"127.0.0.1"),
               (b":path", b"/echo/bad"), bad]
    events = h2_client_request(gw.port, headers)
    assert any(isinstance(e, h2.events.StreamReset) and e.error_code == 1 for e in events) or any(
        isinstance(e, h2.events.ConnectionTerminated) and e.error_code == 1 for e in events), events
    assert not any(isinstance(e, h2.events.ResponseReceived) for e in events)
    # the gateway still serves, and nothing of the bad request reached the upstream
    good = h2_client_request(gw.port, headers[:4])
    assert any(isinstance(e, h2.events.ResponseReceived) for e in good)
    assert len(upstream.requests_with("/echo/bad")) == 1


@pytest.mark.parametrize("trailer", [(b"X-Upper", b"1"), (b"x bad", b"1"), (b":path", b"/x"),
                                     (b"content-length", b"3"), (b"x-bad", b"a\r\nb")])
def test_a_forbidden_request_trailer_is_refused_and_the_body_never_completes_upstream(gateways, ca, upstream,
                                                                                      trailer):
    """A trailer HTTP/1.1 could not carry, or one that frames the request, resets the stream: the
    chunked body sent upstream never gets its last chunk, so no upstream sees a whole request."""
    gw = start(gateways, ca, upstream)
    headers = [(b":method", b"POST"), (b":scheme", b"http"), (b":authority", b"127.0.0.1"),
               (b":path", b"/echo/trailer")]
    events = h2_client_request(gw.port, headers, b"abc", [trailer])
    assert any(isinstance(e, h2.events.StreamReset) and e.error_code == 1 for e in events), events
    good = h2_client_request(gw.port, headers, b"abc", [(b"x-sum", b"1")])
    assert any(isinstance(e, h2.events.ResponseReceived) for e in good)
    assert [r.body for r in upstream.requests_with("/echo/trailer")] == [b"abc"]


def test_a_malformed_trailer_is_refused_with_a_content_length_too(gateways, ca, upstream):
    """With a content-length the trailers have no chunk to travel in and are dropped; a malformed one
    is still a stream error, as for a chunked body."""
    gw = start(gateways, ca, upstream)
    headers = [(b":method", b"POST"), (b":scheme", b"http"), (b":authority", b"127.0.0.1"),
               (b":path", b"/echo/cl-trailer"), (b"content-length", b"3")]
    events = h2_client_request(gw.port, headers, b"abc", [(b"X-Upper", b"1")])
    assert any(isinstance(e, h2.events.StreamReset) and e.error_code == 1 for e in events), events
    good = h2_client_request(gw.port, headers, b"abc", [(b"x-sum", b"1")])
    assert any(isinstance(e, h2.events.ResponseReceived) for e in good)


def test_content_length_that_disagrees_with_data_is_refused(gateways, ca, upstream):
    gw = start(gateways, ca, upstream)
    headers = [(b":method", b"POST"), (b":scheme", b"http"), (b":authority", b"127.0.0.1"),
               (b":path", b"/echo/cl"), (b"content-length", b"10")]
    events = h2_client_request(gw.port, headers, b"12345")
    assert any(isinstance(e, (h2.events.StreamReset, h2.events.ConnectionTerminated)) and e.error_code == 1
               for e in events), events
    time.sleep(0.3)
    assert not [r for r in upstream.requests_with("/echo/cl") if r.body]


# -- log and stop -------------------------------------------------------------------------

def test_each_stream_is_logged_once_as_http2(gateways, ca, upstream, tmp_path):
    log_path = tmp_path / "access.log"
    config = {"upstreams": [upstream.config()], "routes": [{"name": "echo", "path_prefix": "/echo", "upstream": "up"}],
              "access_log": {"path": str(log_path), "format": "combined"}}
    gw = start(gateways, ca, upstream, config)
    result = subprocess.run(["nghttp", "-n", gw.url("/echo/a"), gw.url("/echo/b"), gw.url("/nowhere")],
                            capture_output=True, text=True, timeout=30)  # three streams, one connection
    assert result.returncode == 0, result.stderr
    deadline = time.monotonic() + 10
    lines: list[str] = []
    while time.monotonic() < deadline:
        lines = [line for line in (log_path.read_text().splitlines() if log_path.exists() else [])
                 if "/echo/" in line or "/nowhere" in line]
        if len(lines) >= 3:
            break
        time.sleep(0.1)
    assert len(lines) == 3, lines
    assert sum('"GET /echo/a HTTP/2.0" 200' in line for line in lines) == 1
    assert sum('"GET /echo/b HTTP/2.0" 200' in line for line in lines) == 1
    assert sum('"GET /nowhere HTTP/2.0" 404' in line for line in lines) == 1


def test_graceful_stop_finishes_streams_in_flight_after_goaway(gateways, ca, upstream):
    gw = start(gateways, ca, upstream)
    client = subprocess.Popen(["nghttp", "-v", gw.url("/echo/drain?delay=1")],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        upstream.wait_request("/echo/drain")
        gw.signal(signal.SIGQUIT)
        out, _ = client.communicate(timeout=20)
    finally:
        client.kill()
    assert client.returncode == 0, out
    assert "recv GOAWAY frame" in out and "error_code=NO_ERROR" in out, out
    stream = re.search(r"send HEADERS frame <[^>]*stream_id=(\d+)>", out).group(1)
    assert "last_stream_id=2147483647," in out, out  # the first GOAWAY: no new streams (the final one follows)
    assert f"recv (stream_id={stream}) :status: 200" in out, out
    assert '"target": "/echo/drain?delay=1"' in out or '"target":"/echo/drain?delay=1"' in out, out
    assert out.index("recv GOAWAY frame") < out.index(f"recv (stream_id={stream}) :status: 200")
    assert gw.wait_exit(20) == 0


def test_a_stream_whose_window_stays_closed_stalls_alone_and_pauses_its_upstream(gateways, ca, upstream):
    gw = start(gateways, ca, upstream)
    size = 64 * 1024 * 1024
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding=None))
    conn.initiate_connection()

    def request(stream_id: int, path: str) -> None:
        conn.send_headers(stream_id, [(b":method", b"GET"), (b":scheme", b"http"), (b":authority", b"127.0.0.1"),
                                      (b":path", path.encode())], end_stream=True)

    with socket.create_connection(("127.0.0.1", gw.port), timeout=10) as sock:
        request(1, f"/echo/huge?bytes={size}")
        sock.sendall(conn.data_to_send())
        got = {1: 0, 3: 0}
        ended = set()
        asked_second = False
        deadline = time.monotonic() + 20
        while 3 not in ended and time.monotonic() < deadline:
            for event in conn.receive_data(sock.recv(65536)):
                if isinstance(event, h2.events.DataReceived):
                    got[event.stream_id] += len(event.data)
                    if event.stream_id == 1:  # the connection's window is given back, never stream 1's
                        conn.increment_flow_control_window(event.flow_controlled_length)
                    else:
                        conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                elif isinstance(event, h2.events.StreamEnded):
                    ended.add(event.stream_id)
            if got[1] >= 65535 and not asked_second:
                asked_second = True
                request(3, "/echo/other?bytes=300000")
            sock.sendall(conn.data_to_send())
        assert 3 in ended and got[3] == 300000, got
        assert got[1] == 65535  # the stream's window, not a byte more
        time.sleep(1.0)
        sent = upstream.read(lambda s: s.bytes_sent)
        time.sleep(0.5)
        assert upstream.read(lambda s: s.bytes_sent) == sent  # its upstream is paused ...
        assert sent < size // 2  # ... long before the end of the body


def test_tls_alpn_h2_with_httpx_and_h2load(gateways, ca, upstream):
    gw = start(gateways, ca, upstream)
    size = 3 * 1024 * 1024
    context = ssl.create_default_context(cafile=str(ca[1] / "ca.pem"))
    with httpx.Client(http1=True, http2=True, verify=context, timeout=20) as client:
        response = client.get(f"https://127.0.0.1:{gw.tls_port}/echo/tls-big?bytes={size}&frame=chunked",
                              headers={"Host": "site.test"}, extensions={"sni_hostname": "site.test"})
        assert response.http_version == "HTTP/2" and response.status_code == 200
        assert hashlib.sha256(response.content).hexdigest() == pattern_sha256(size)
    assert upstream.wait_request("/echo/tls-big").header("X-Forwarded-Proto") == "https"
    result = subprocess.run(["h2load", "-n", "600", "-c", "2", "-m", "10", f"https://127.0.0.1:{gw.tls_port}/echo/l"],
                            capture_output=True, text=True, timeout=120)
    assert "600 succeeded, 0 failed, 0 errored" in result.stdout, result.stdout + result.stderr
    assert "Application protocol: h2" in result.stdout


def test_close_delimited_informational_head_and_failed_upstream_responses(gateways, ca, upstream):
    gw = start(gateways, ca, upstream)
    result = curl_h2c(gw, "/echo/close?bytes=100000&frame=close", "-o", "-")
    assert result.returncode == 0, result.stderr
    assert hashlib.sha256(result.stdout).hexdigest() == pattern_sha256(100000)

    result = curl_h2c(gw, "/echo/info?info=103", "-v", "-o", "/dev/null")
    assert result.returncode == 0, result.stderr
    assert b"< HTTP/2 103" in result.stderr and b"< HTTP/2 200" in result.stderr

    result = curl_h2c(gw, "/echo/head?bytes=5000", "-I")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(b"HTTP/2 200") and b"content-length: 5000" in result.stdout

    result = curl_h2c(gw, "/echo/broken?fail=garbage", "-i")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(b"HTTP/2 502")
    assert json.loads(result.stdout.split(b"\r\n\r\n", 1)[1])["status"] == 502

    result = curl_h2c(gw, "/echo/midbody?bytes=400000&fail=midbody", "-o", "/dev/null")
    assert result.returncode != 0  # cut short: the stream is reset, not ended cleanly
    result = curl_h2c(gw, "/echo/after", "-o", "/dev/null", "-w", "%{http_code}")
    assert result.stdout == b"200"


def test_stalled_body_is_408_and_a_closed_window_is_cut_after_send_timeout(gateways, ca, upstream):
    config = {"upstreams": [upstream.config()], "routes": [{"name": "echo", "path_prefix": "/echo", "upstream": "up"}],
              "http": {"body_timeout": "1s", "send_timeout": "1s"}}
    gw = start(gateways, ca, upstream, config)
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding=None))
    conn.initiate_connection()
    base = [(b":scheme", b"http"), (b":authority", b"127.0.0.1")]
    with socket.create_connection(("127.0.0.1", gw.port), timeout=10) as sock:
        conn.send_headers(1, [(b":method", b"POST"), (b":path", b"/echo/stalled"), *base, (b"content-length", b"10")])
        conn.send_data(1, b"12345")
        conn.send_headers(3, [(b":method", b"GET"), (b":path", b"/echo/unread?bytes=2000000"), *base],
                          end_stream=True)
        sock.sendall(conn.data_to_send())
        began = time.monotonic()
        status: dict[int, bytes] = {}
        reset: dict[int, float] = {}
        ended = set()
        while (1 not in ended and 1 not in reset) or 3 not in reset:
            assert time.monotonic() - began < 10, (status, reset, ended)
            for event in conn.receive_data(sock.recv(65536)):
                if isinstance(event, h2.events.ResponseReceived):
                    status[event.stream_id] = dict(event.headers)[b":status"]
                elif isinstance(event, h2.events.DataReceived) and event.stream_id == 1:
                    conn.acknowledge_received_data(event.flow_controlled_length, 1)
                elif isinstance(event, h2.events.DataReceived):
                    conn.increment_flow_control_window(event.flow_controlled_length)  # never stream 3's window
                elif isinstance(event, h2.events.StreamEnded):
                    ended.add(event.stream_id)
                elif isinstance(event, h2.events.StreamReset):
                    reset[event.stream_id] = time.monotonic() - began
            sock.sendall(conn.data_to_send())
        assert status[1] == b"408"
        assert status[3] == b"200" and 3 not in ended and 0.9 < reset[3] < 5
    assert not upstream.requests_with("/echo/stalled")
