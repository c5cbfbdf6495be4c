"""/status.html in a real headless Chromium: it loads, reads /status, shows the live numbers, and its
charts move under load."""

import re
import shutil
import subprocess
import threading
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests.support.devtools import Chromium
from tests.support.ports import refused_port
from tests.support.wait import wait_until

CHROMIUM = next((p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="needs chromium (apt-get install chromium)")


def _chromium(*args: str, cwd) -> str:
    done = subprocess.run(
        [CHROMIUM, "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
         "--no-first-run", "--virtual-time-budget=5000", f"--user-data-dir={cwd}/profile", *args],
        capture_output=True, text=True, timeout=90, cwd=cwd)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def _text(dom: str, element_id: str) -> str:
    found = re.search(rf'id="{element_id}"[^>]*>([^<]*)<', dom)
    assert found, f"#{element_id} is not on the page"
    return found.group(1)


def _rows(dom: str, table_id: str) -> list[list[str]]:
    """The cells of each body row of a table."""
    body = re.search(rf'<table id="{table_id}">.*?<tbody>(.*?)</tbody>', dom, re.S)
    assert body, f"table #{table_id} is not on the page"
    return [re.findall(r"<td[^>]*>([^<]*)</td>", row) for row in re.findall(r"<tr>(.*?)</tr>", body.group(1), re.S)]


def test_status_page_shows_live_numbers(gateways, tmp_path):
    gw = gateways.start({"routes": [{"name": "hello", "path": "/hello", "respond": {"body": "hi"}}]}, workers=2)
    with ThreadPoolExecutor(4) as pool:
        assert list(pool.map(lambda _: httpx.get(gw.url("/hello")).status_code, range(7))) == [200] * 7
        assert list(pool.map(lambda _: httpx.get(gw.url("/nothing-here")).status_code, range(3))) == [404] * 3
    page = f"http://127.0.0.1:{gw.admin_port}/status.html"
    wait_until(lambda: httpx.get(f"http://127.0.0.1:{gw.admin_port}/status").json()["status"]["4xx"] == 3,
               "the workers published their counts (every clock tick)")

    dom = _chromium("--dump-dom", page, cwd=tmp_path)
    status = httpx.get(f"http://127.0.0.1:{gw.admin_port}/status").json()  # the readiness probes count too
    assert _text(dom, "state") == "ready"
    assert _text(dom, "total-requests") == str(status["requests"])
    assert _text(dom, "status-2xx") == str(status["status"]["2xx"]) and status["status"]["2xx"] >= 7
    assert _text(dom, "status-4xx") == "3"
    assert _text(dom, "error") == ""
    assert _text(dom, "redis-p99") == "0.00 ms" and _text(dom, "redis-timeouts") == "0"  # no Redis store here
    assert re.search(r"<td>hello</td><td>7</td>", dom), "the routes table lists the route with its count"
    workers = _rows(dom, "workers")
    assert sorted(int(row[0]) for row in workers) == sorted(gw.worker_pids()), "a row per worker"
    assert sum(int(row[5]) for row in workers) == status["status"]["2xx"], "the workers' 2xx add up to the total"
    assert sum(int(row[6]) for row in workers) == 3 and all(row[11] == "closed" for row in workers)

    shot = tmp_path / "status.png"
    _chromium(f"--screenshot={shot}", "--window-size=1280,1100", page, cwd=tmp_path)
    image = shot.read_bytes()
    assert image[:8] == b"\x89PNG\r\n\x1a\n" and len(image) > 20_000  # a rendered page, not a blank one


def _last(browser: Chromium, chart: str, series: str) -> float:
    return float(browser.evaluate(
        f"document.querySelector('#{chart} polyline[data-series=\"{series}\"]').dataset.last"))


def _points(browser: Chromium, chart: str, series: str) -> str:
    return browser.evaluate(f"document.querySelector('#{chart} polyline[data-series=\"{series}\"]')"
                            ".getAttribute('points')")


def test_status_page_charts_move_under_load(gateways, upstream, tmp_path):
    """In a real-time headless Chromium: under load the request-rate, latency and upstream-error lines
    rise (the chart screenshots change), per route and per upstream, and fall back when it stops."""
    dead = f"127.0.0.1:{refused_port()}"
    gw = gateways.start({
        "upstreams": [{"name": "api", "servers": [upstream.address]},
                      {"name": "gone", "servers": [dead], "connect_retries": 0, "eject_after_failures": 0}],
        "routes": [{"name": "api", "path_prefix": "/api/", "upstream": "api"},
                   {"name": "gone", "path_prefix": "/gone/", "upstream": "gone"}]}, workers=2)
    browser = Chromium(tmp_path / "chromium")
    stop = threading.Event()
    load = None
    try:
        browser.open(f"http://127.0.0.1:{gw.admin_port}/status.html")
        wait_until(lambda: browser.evaluate("reads.length") >= 2, "the page read /status twice")
        quiet = browser.screenshot("#chart-rate")
        assert _last(browser, "chart-rate", "2xx") < 5 and _last(browser, "chart-errors", "connect_errors") == 0

        def send() -> int:
            sent = 0
            with httpx.Client(timeout=10) as client:
                while not stop.is_set() and sent < 20000:  # bounded, whatever happens
                    client.get(gw.url("/api/x"))
                    client.get(gw.url("/gone/x" if sent % 4 == 0 else "/api/y"))
                    sent += 2
            return sent

        load = ThreadPoolExecutor(1)
        running = load.submit(send)
        wait_until(lambda: _last(browser, "chart-rate", "2xx") > 5 and _last(browser, "chart-rate", "5xx") > 0
                   and _last(browser, "chart-errors", "connect_errors") > 0, "the lines rise under load", timeout_s=40)
        assert _last(browser, "chart-latency", "p99") > 0
        loaded = browser.screenshot("#chart-rate")
        assert loaded != quiet, "the chart looks the same under load as before it"
        (tmp_path / "chart-quiet.png").write_bytes(quiet)
        (tmp_path / "chart-loaded.png").write_bytes(loaded)
        errors_before = _points(browser, "chart-errors", "connect_errors")

        # per route: "api" had no 5xx, "gone" only 5xx; per upstream: "api" had no connect errors
        browser.evaluate("(() => { const s = document.getElementById('chart-route'); s.value = 'api';"
                         " s.dispatchEvent(new Event('change')); })()")
        assert _points(browser, "chart-rate", "2xx") != "" and _last(browser, "chart-rate", "2xx") > 0
        assert _last(browser, "chart-rate", "5xx") == 0
        assert len({p.split(",")[1] for p in _points(browser, "chart-rate", "5xx").split()}) == 1, "flat at 0 for api"
        browser.evaluate("(() => { const s = document.getElementById('chart-upstream'); s.value = 'api';"
                         " s.dispatchEvent(new Event('change')); })()")
        assert _last(browser, "chart-errors", "connect_errors") == 0
        browser.evaluate("(() => { for (const id of ['chart-route', 'chart-upstream']) {"
                         " const s = document.getElementById(id); s.value = ''; s.dispatchEvent(new Event('change')); } })()")

        stop.set()
        assert running.result(timeout=30) > 0
        wait_until(lambda: _last(browser, "chart-rate", "2xx") < 1 and _last(browser, "chart-errors", "connect_errors") == 0,
                   "the lines fall back when the load stops", timeout_s=40)
        assert _points(browser, "chart-errors", "connect_errors") != errors_before
        (tmp_path / "status-after.png").write_bytes(browser.screenshot())
        print(f"screenshots in {tmp_path}")
    finally:
        stop.set()
        if load is not None:
            load.shutdown(wait=True)
        browser.close()
