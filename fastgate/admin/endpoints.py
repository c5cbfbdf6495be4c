"""What each admin path answers. Every answer is (status, content type, body, extra headers)."""

import hmac
from collections.abc import Callable
from importlib.resources import files
from urllib.parse import parse_qs, urlsplit

import msgspec

from fastgate.admin.certificates import certificate_series
from fastgate.admin.redact import redacted_config
from fastgate.admin.server_series import server_series
from fastgate.admin.upstreams import UpstreamsApi
from fastgate.admin.status import status_document
from fastgate.observe.collect import collect
from fastgate.observe.prometheus import CONTENT_TYPE as PROMETHEUS, render
from fastgate.observe.shm import READY, STARTING, MetricsRegion
from fastgate.upstream.server_table import ServerTable

_JSON = b"application/json"
_HTML = b"text/html; charset=utf-8"
_OPEN_PATHS = frozenset(("/healthz", "/readyz"))


class AdminEndpoints:
    def __init__(self, config, region: MetricsRegion, metrics_on: bool, started: float, version: str,
                 listeners: tuple = (), acme: tuple = (), more_metrics: Callable[[], bytes] = bytes,
                 servers: ServerTable | None = None, servers_applied=lambda: None) -> None:
        self.config = config
        self.servers = servers
        """The shared server table (its discovery counts go to /metrics), or None."""
        self.upstreams = UpstreamsApi(servers, config.upstreams, servers_applied) if servers is not None else None
        """The /upstreams API (admin/upstreams.py)."""
        self.listeners = listeners
        """The compiled listeners (config/listeners.py): /metrics reads their certificates' expiry."""
        self.acme = acme
        """The managed ACME certificates (their order counts go to /metrics)."""
        self.more_metrics = more_metrics
        """Families kept outside the summed series (the rate limiter's hot keys), appended to /metrics."""
        self.region = region
        self.metrics_on = metrics_on
        self.started = started
        self.version = version
        self.token = config.admin.token.encode()
        self.page = files("fastgate.admin").joinpath("status.html").read_bytes()
        self.paths = {
            "/healthz": self._healthz,
            "/readyz": self._readyz,
            "/metrics": self._metrics,
            "/status": self._status,
            "/status.html": self._page,
            "/config": self._config,
        }

    def answer(self, method: bytes, target: bytes, headers: dict, body: bytes = b"") -> tuple:
        url = urlsplit(target.decode("latin-1"))
        if self.upstreams is not None and (url.path == "/upstreams" or url.path.startswith("/upstreams/")):
            return self._upstreams(method, url, headers, body)
        handler = self.paths.get(url.path)
        if handler is None:
            return _error(404, "no such admin endpoint")
        if method not in (b"GET", b"HEAD"):
            return _error(405, "admin endpoints answer GET and HEAD only", ((b"Allow", b"GET, HEAD"),))
        if self.token and url.path not in _OPEN_PATHS and not self._authorized(headers, url.query):
            return _error(401, "a valid admin token is required", ((b"WWW-Authenticate", b"Bearer"),))
        return handler()

    def _upstreams(self, method: bytes, url, headers: dict, body: bytes) -> tuple:
        """The upstream servers API: reading follows the token like /status; changing needs one set."""
        changing = method not in (b"GET", b"HEAD")
        if changing and not self.token:
            return _error(403, "changing upstreams needs admin.token to be set")
        if self.token and not self._authorized(headers, url.query):
            return _error(401, "a valid admin token is required", ((b"WWW-Authenticate", b"Bearer"),))
        status, document = self.upstreams.answer(method, url.path, body)
        return status, _JSON, document, ()

    def _authorized(self, headers: dict, query: str) -> bool:
        given = headers.get(b"authorization", b"")
        if given.lower().startswith(b"bearer "):
            given = given[7:].strip()
        else:
            given = parse_qs(query).get("token", [""])[0].encode()
        return hmac.compare_digest(given, self.token)

    def _healthz(self) -> tuple:
        return 200, _JSON, b'{"status":"alive"}', ()

    def _readyz(self) -> tuple:
        state = self.region.state
        if state == READY:
            return 200, _JSON, b'{"status":"ready"}', ()
        return 503, _JSON, b'{"status":"%s"}' % (b"starting" if state == STARTING else b"draining"), ()

    def _metrics(self) -> tuple:
        if not self.metrics_on:
            return _error(404, "metrics are off (admin.metrics = false)")
        totals = collect(self.region).totals
        totals.update(certificate_series(self.listeners, self.acme))
        if self.servers is not None:
            totals.update(server_series(self.servers, self.config.upstreams))
        return 200, PROMETHEUS, render(totals) + self.more_metrics(), ()

    def _status(self) -> tuple:
        document = status_document(collect(self.region), self.region.state, self.started, self.version)
        document["metrics"] = self.metrics_on
        return 200, _JSON, msgspec.json.encode(document), ()

    def _page(self) -> tuple:
        return 200, _HTML, self.page, ()

    def _config(self) -> tuple:
        return 200, _JSON, redacted_config(self.config), ()


def _error(status: int, message: str, extra: tuple = ()) -> tuple:
    return status, _JSON, msgspec.json.encode({"error": message, "status": status}), extra
