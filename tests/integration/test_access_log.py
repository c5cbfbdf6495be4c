"""The access log through the real gateway: one whole JSON line per request, from every worker,
with what the client saw; rotation on SIGUSR1; a target that fails never stops the serving."""

import json
import os
import signal
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.support.ports import refused_port
from tests.support.wait import wait_until


def read_lines(*paths: Path) -> list[dict]:
    """Every line of the files, parsed (a line cut or mixed with another fails here), but for
    the test harness's readiness probes."""
    lines = []
    for path in paths:
        if path.exists():
            data = path.read_bytes()
            assert not data or data.endswith(b"\n"), "a line was cut"
            lines += [json.loads(line) for line in data.splitlines()]
    return [line for line in lines if line.get("route") != "readiness"]


def wait_lines(*paths: Path, count: int) -> list[dict]:
    def enough() -> list[dict] | None:
        lines = read_lines(*paths)
        return lines if len(lines) >= count else None
    return wait_until(enough, f"{count} lines are in the access log")


def exchange(port: int, request: bytes) -> bytes:
    """Send one raw request with Connection: close and return every byte of the answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=15) as sock:
        sock.sendall(request)
        received = bytearray()
        while chunk := sock.recv(65536):
            received += chunk
    return bytes(received)


def logged_gateway(gateways, upstream, tmp_path, workers=2, **access_log):
    config = {
        "upstreams": [upstream.config(), {"name": "dead", "servers": [f"127.0.0.1:{refused_port()}"],
                                          "connect_retries": 0}],
        "routes": [
            {"name": "api", "path_prefix": "/api/", "upstream": "up"},
            {"name": "dead", "path_prefix": "/dead/", "upstream": "dead"},
            {"name": "limited", "path_prefix": "/limited/", "upstream": "up",
             "limits": [{"key": ["header:X-Key"], "rate": "1/1m"}]},
        ],
        "access_log": {"path": str(tmp_path / "access.log"), **access_log},
    }
    return gateways.start(config, workers=workers)


def test_each_request_is_one_line_with_what_the_client_saw(gateways, upstream, tmp_path):
    gw = logged_gateway(gateways, upstream, tmp_path)
    cases = [  # (request id, path, extra headers, expected status, route, upstream)
        *[(f"ok-{i}", f"/api/item/{i}?q={i}", "", 200, "api", upstream.address) for i in range(20)],
        ("missing", "/nowhere", "", 404, "", ""),
        ("refused", "/dead/x", "", 502, "dead", ""),
        ("first", "/limited/a", "X-Key: k\r\n", 200, "limited", upstream.address),
        ("second", "/limited/b", "X-Key: k\r\n", 429, "limited", ""),
    ]
    sent = {}

    def one(case):
        rid, path, extra, _, _, _ = case
        request = (f"GET {path} HTTP/1.1\r\nHost: gw.test\r\nUser-Agent: probe/1\r\nReferer: http://ref/\r\n"
                   f"X-Request-ID: {rid}\r\n{extra}Connection: close\r\n\r\n").encode()
        return rid, request, exchange(gw.port, request)

    with ThreadPoolExecutor(8) as pool:  # many connections: both workers serve some
        for rid, request, answer in pool.map(one, cases[:-1]):
            sent[rid] = (request, answer)
    rid, request, answer = one(cases[-1])  # after "first": the limit is spent
    sent[rid] = (request, answer)

    lines = {line["request_id"]: line for line in wait_lines(tmp_path / "access.log", count=len(cases))}
    assert sorted(lines) == sorted(sent)
    for rid, path, _, status, route, server in cases:
        line = lines[rid]
        request, answer = sent[rid]
        assert answer.startswith(f"HTTP/1.1 {status} ".encode()), answer[:100]
        assert (line["method"], line["path"], line["status"], line.get("route", ""), line.get("upstream", "")) == (
            "GET", path, status, route, server)
        assert "" not in line.values()  # empty fields are left out
        assert line["bytes_in"] == len(request) and line["bytes_out"] == len(answer)
        assert line["client_ip"] == "127.0.0.1" and line["protocol"] == "HTTP/1.1"
        assert line["user_agent"] == "probe/1" and line["referer"] == "http://ref/"
        assert line.get("ratelimit", "") == {"first": "allowed", "second": "limited"}.get(rid, "")
        assert abs(line["time"] - time.time()) < 600 and line["total_time"] >= line["upstream_time"] >= 0
        assert (line["upstream_time"] > 0) == (status == 200)


def test_a_client_that_leaves_before_the_answer_is_logged_499(gateways, upstream, tmp_path):
    gw = logged_gateway(gateways, upstream, tmp_path, workers=1)
    with socket.create_connection(("127.0.0.1", gw.port), timeout=15) as sock:
        sock.sendall(b"GET /api/slow?delay=3 HTTP/1.1\r\nHost: gw\r\nX-Request-ID: gone\r\n\r\n")
        upstream.wait_request("/api/slow")
    [line] = wait_lines(tmp_path / "access.log", count=1)
    assert (line["request_id"], line["status"], line["bytes_out"]) == ("gone", 499, 0)


@pytest.mark.parametrize("how", ["-s reopen", "SIGUSR1"])
def test_rotation_splits_the_lines_between_the_files_and_loses_none(gateways, upstream, tmp_path, how):
    gw = logged_gateway(gateways, upstream, tmp_path, workers=2)
    current, rotated = tmp_path / "access.log", tmp_path / "access.log.1"

    def burst(tag: str, count: int) -> None:
        def one(i: int) -> int:
            return httpx.get(gw.url(f"/api/{tag}"), headers={"X-Request-ID": f"{tag}-{i}"}, timeout=10).status_code
        with ThreadPoolExecutor(6) as pool:
            assert set(pool.map(one, range(count))) == {200}

    burst("before", 40)
    wait_lines(current, count=40)
    current.rename(rotated)
    if how == "SIGUSR1":
        gw.signal(signal.SIGUSR1)
    else:
        assert gw.cli("-s", "reopen").returncode == 0
    wait_until(current.exists, "a worker opens the log again")
    burst("after", 40)
    lines = wait_lines(current, rotated, count=80)
    ids = [line["request_id"] for line in lines]
    assert sorted(ids) == sorted([f"before-{i}" for i in range(40)] + [f"after-{i}" for i in range(40)])
    old, new = read_lines(rotated), read_lines(current)
    assert {line["request_id"] for line in old} >= {f"before-{i}" for i in range(40)}
    assert new and all(line["request_id"].startswith("after-") for line in new)


def test_a_full_disk_or_a_missing_directory_does_not_stop_the_serving(gateways, upstream, tmp_path):
    for target in ("/dev/full", str(tmp_path / "no" / "such" / "dir" / "access.log")):
        gw = gateways.start({"upstreams": [upstream.config()],
                             "routes": [{"name": "api", "path_prefix": "/api/", "upstream": "up"}],
                             "access_log": {"path": target}}, workers=2)
        with httpx.Client(base_url=gw.url()) as client:
            for i in range(30):
                assert client.get(f"/api/{i}").status_code == 200
        expected = "No space left on device" if target == "/dev/full" else "cannot open"
        wait_until(lambda: expected in gw.log_text(), f"the error log says {expected!r}")
        assert httpx.get(gw.url("/api/again")).status_code == 200 and gw.alive()
        gw.stop()


def test_a_pipe_nobody_reads_does_not_slow_the_gateway(gateways, upstream, tmp_path):
    fifo = tmp_path / "access.fifo"
    os.mkfifo(fifo)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)  # held open, not read: the pipe fills
    try:
        gw = logged_gateway(gateways, upstream, tmp_path, workers=1, path=str(fifo), buffer="4KiB")
        with httpx.Client(base_url=gw.url()) as client:
            for i in range(600):  # about 300 KiB of lines: far more than the pipe and the buffer
                assert client.get(f"/api/{i}", headers={"X-Request-ID": f"r{i:04d}"}).status_code == 200
        wait_until(lambda: "cannot keep up" in gw.log_text(), "the dropped lines are reported")
        received = bytearray()
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:  # the gateway writes what it kept once there is room
            try:
                received += os.read(reader, 1 << 16)
            except BlockingIOError:
                time.sleep(0.05)
        ids = [line["request_id"] for line in (json.loads(x) for x in bytes(received).splitlines())]
        assert ids and ids == sorted(ids) and len(ids) < 600
    finally:
        os.close(reader)


def test_json_error_log_and_combined_access_log(gateways, upstream, tmp_path):
    gw = gateways.start({
        "server": {"error_log_format": "json"},
        "upstreams": [upstream.config()],
        "routes": [{"name": "api", "path_prefix": "/api/", "upstream": "up"}],
        "access_log": {"path": str(tmp_path / "access.log"), "format": "combined"},
    }, workers=2)
    httpx.get(gw.url("/api/x?y=1"), headers={"User-Agent": "probe/2"})
    [line] = wait_until(lambda: [x for x in (tmp_path / "access.log").read_text().splitlines(keepends=True)
                                 if "/api/" in x], "the line is written")
    assert line.startswith("127.0.0.1 - - [") and line.endswith(
        '] "GET /api/x?y=1 HTTP/1.1" 200 ' + line.split(" 200 ")[1].split(" ")[0] + ' "-" "probe/2"\n')
    gw.signal(signal.SIGHUP)  # a reload logs from the master
    wait_until(lambda: "reloaded" in gw.error_log.read_text(), "the reload is logged")
    entries = [json.loads(x) for x in gw.error_log.read_text().splitlines()]
    messages = [entry["message"] for entry in entries]
    assert any(" started: 2 workers" in m for m in messages) and any(m.startswith("reloaded") for m in messages)
    for entry in entries:
        assert entry["level"] in {"info", "warning", "error"} and entry["pid"] > 0 and entry["time"] > 0
