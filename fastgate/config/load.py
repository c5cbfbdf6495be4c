"""Load a config file: TOML -> schema Structs -> checked -> compiled runtime objects.

Every problem is raised as one ConfigError naming the file, the field path
(``routes[2].upstream``) and the reason, so ``fastgate -t`` and a reload can
print it and keep the old config.
"""

import importlib.util
import os
import re
import tomllib
from dataclasses import dataclass
from urllib.parse import urlsplit

import msgspec

from fastgate.config.errors import ConfigError, FieldError
from fastgate.acme.settings import HTTP01, ManagedCertificate
from fastgate.config.listeners import ListenerSpec, challenge_route, compile_acme, compile_listeners, resolve
from fastgate.config.schema import Config, Events, Http, Route as RouteConfig
from fastgate.config.units import decode_hook
from fastgate.filters.aggregate import AggregateFilter
from fastgate.filters.chain import FilterChain
from fastgate.filters.header_edits import HeaderEditsFilter
from fastgate.filters.rate_limit import RateLimitFilter
from fastgate.filters.respond import RespondFilter
from fastgate.health import settings as health_settings
from fastgate.health.state import HealthTable, create_table
from fastgate.observe.otlp import check_installed, parse_endpoint
from fastgate.proxy.aggregate import Aggregate
from fastgate.ratelimit import RateLimiter
from fastgate.ratelimit import validate as validate_limits
from fastgate.routing.route import Route, route_name
from fastgate.routing.router import Router
from fastgate.tls.certificates import TlsSettingError
from fastgate.tls.client import ALPN_H1, ALPN_H2, UpstreamTls
from fastgate.upstream.group import UpstreamGroup, compile_upstreams
from fastgate.upstream.hash_key import compile_hash_key
from fastgate.upstream.server_table import ServerTable, create_table as create_server_table
from fastgate.discovery import settings as discovery_settings

_TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
_MSGSPEC_PATH = re.compile(r" - at `\$\.?(.*)`$")


@dataclass(frozen=True, slots=True)
class LoadedConfig:
    """A checked config and what was compiled from it once, for every worker to share."""

    path: str
    config: Config
    router: Router
    upstreams: dict[str, UpstreamGroup]
    limiter: RateLimiter
    """Rate limits; its local table is shared memory, so load in the master, before forking."""
    health: HealthTable
    """Verdicts of the active health checks; shared memory, so load in the master, before forking."""
    listeners: tuple[ListenerSpec, ...] = ()
    """The listeners compiled (config/listeners.py): their TLS contexts are made here, in the master,
    so that the workers share their session ticket keys."""
    acme: tuple[ManagedCertificate, ...] = ()
    """The certificates the ACME manager keeps issued (acme/), without repeats."""
    servers: ServerTable | None = None
    """Every upstream's servers at run time (DNS discovery, admin API edits); shared memory, so load in
    the master, before forking."""


def load_config(path: str, previous: LoadedConfig | None = None) -> LoadedConfig:
    """Load, check and compile ``path``; raise ConfigError.

    On reload pass the running config as ``previous``: the local rate-limit
    counters, the health verdicts of servers still checked and the servers
    found in DNS for unchanged discovery tables carry over to the new config
    (admin API edits of servers do not).
    """
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as exc:
        raise ConfigError(path, "", f"cannot read: {exc.strerror}") from None
    try:
        document = tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(path, "", f"not valid TOML: {exc}") from None
    try:
        config = msgspec.convert(document, Config, dec_hook=decode_hook)
    except msgspec.ValidationError as exc:
        message = str(exc)
        m = _MSGSPEC_PATH.search(message)
        field = m.group(1) if m else ""
        reason = message[: m.start()] if m else message
        raise ConfigError(path, field, reason) from None
    _check(path, config)
    upstreams = compile_upstreams(config.upstreams)
    base_dir = os.path.dirname(os.path.abspath(path))
    try:
        _attach_upstream_tls(config, upstreams, base_dir)
        limiter = RateLimiter.create_shared(config.ratelimit, previous.limiter if previous else None)
        managed = compile_acme(config, base_dir)
        challenge = challenge_route(config, managed, limiter)
        router = compile_routes(config.routes, upstreams, config.http, limiter, [challenge] if challenge else [])
        listeners = compile_listeners(config, base_dir, limiter, managed, challenge)
    except FieldError as exc:
        raise ConfigError(path, exc.field, exc.reason) from None
    health = create_table(upstreams.values(), previous.health if previous else None)
    servers = create_server_table(config.upstreams, previous.servers if previous else None,
                                  previous.config.upstreams if previous else ())
    return LoadedConfig(path, config, router, upstreams, limiter, health, listeners,
                        tuple(dict.fromkeys(managed.values())), servers)


def _attach_upstream_tls(config: Config, upstreams: dict[str, UpstreamGroup], base_dir: str) -> None:
    """Make the client context of every HTTPS upstream (files read relative to ``base_dir``)."""
    for i, upstream in enumerate(config.upstreams):
        if not upstream.tls:
            continue
        try:
            upstreams[upstream.name].tls = UpstreamTls(
                upstream.tls_verify, resolve(base_dir, upstream.tls_ca_file), upstream.tls_server_name,
                resolve(base_dir, upstream.tls_client_cert), resolve(base_dir, upstream.tls_client_key),
                alpn=ALPN_H2 if upstream.protocol == "h2" else ALPN_H1)
        except TlsSettingError as exc:
            raise FieldError(f"upstreams[{i}].{exc.field}", exc.reason) from None


def compile_routes(configs: list[RouteConfig], upstreams: dict[str, UpstreamGroup], http: Http,
                   limiter: RateLimiter, builtin: list[tuple[Route, list[str]]] = ()) -> Router:
    """The route table, each route built once with its filters (filters/): rate limits, then the
    answer it gives itself (respond or aggregate), and its header edits; the ``builtin`` routes
    (route, hosts) after them. Here, not in routing/, which is data and imports no filters; raise
    FieldError."""
    routes = []
    for i, config in enumerate(configs):
        try:
            route = Route(config, i, upstreams.get(config.upstream) if config.upstream else None, http, limiter)
        except (ValueError, UnicodeError) as exc:
            raise FieldError(f"routes[{i}]", str(exc)) from None
        filters = []
        if route.limits is not None:
            filters.append(RateLimitFilter(route.limits))
        if config.respond is not None:
            filters.append(RespondFilter(config.respond))
        if config.aggregate:
            filters.append(AggregateFilter(Aggregate(config, route, upstreams)))
        filters.append(HeaderEditsFilter(config.request_headers, config.response_headers))  # last: its sets win
        route.attach_filters(FilterChain(tuple(filters)))
        routes.append(route)
    return Router(routes + [route for route, _ in builtin], [c.hosts for c in configs] + [h for _, h in builtin])


def _check(path: str, config: Config) -> None:
    try:
        _check_fields(config)
    except FieldError as exc:
        raise ConfigError(path, exc.field, exc.reason) from None


def _check_fields(config: Config) -> None:
    server, http = config.server, config.http
    if server.workers != "auto" and not 1 <= server.workers <= 512:
        raise FieldError("server.workers", "must be between 1 and 512, or \"auto\"")
    if server.watch and importlib.util.find_spec("watchfiles") is None:
        raise FieldError("server.watch", "needs the watchfiles package: pip install 'fastgate[watch]'")
    for name in ("max_request_line_size", "max_header_size", "max_headers", "header_timeout",
                 "keepalive_timeout", "body_timeout", "send_timeout"):
        if getattr(http, name) <= 0:
            raise FieldError(f"http.{name}", "must be greater than zero")
    if http.max_request_line_size > http.max_header_size:
        raise FieldError("http.max_request_line_size", "cannot exceed http.max_header_size")
    _check_http2(config)
    if not config.listeners:
        raise FieldError("listeners", "at least one listener is needed")
    seen: set[tuple[str, int]] = set()
    acme_by_name: dict[str, object] = {}
    for i, listener in enumerate(config.listeners):
        address = parse_address(listener.address, f"listeners[{i}].address")
        if address in seen:
            raise FieldError(f"listeners[{i}].address", f"{listener.address} is listed twice")
        seen.add(address)
        if not 1 <= listener.backlog <= 65535:
            raise FieldError(f"listeners[{i}].backlog", "must be between 1 and 65535")
        _check_listener_tls(listener, f"listeners[{i}]")
        if listener.tls is not None and listener.tls.acme is not None:
            _check_acme(config, listener.tls.acme, f"listeners[{i}].tls.acme", acme_by_name)
    if config.admin.address:
        admin = parse_address(config.admin.address, "admin.address")
        if admin in seen:
            raise FieldError("admin.address", f"{config.admin.address} is also a listener")
    names: set[str] = set()
    for i, upstream in enumerate(config.upstreams):
        where = f"upstreams[{i}]"
        if not upstream.name:
            raise FieldError(f"{where}.name", "must not be empty")
        if upstream.name in names:
            raise FieldError(f"{where}.name", f"upstream {upstream.name!r} is defined twice")
        names.add(upstream.name)
        if upstream.discovery is not None:
            discovery_settings.validate(upstream, f"{where}")
        elif not upstream.servers:
            raise FieldError(f"{where}.servers", "at least one server is needed (or a discovery table)")
        for j, server in enumerate(upstream.servers):
            if isinstance(server, str):
                parse_address(server, f"{where}.servers[{j}]")
                continue
            parse_address(server.address, f"{where}.servers[{j}].address")
            if not 1 <= server.weight <= 1000:
                raise FieldError(f"{where}.servers[{j}].weight", "must be between 1 and 1000")
        if upstream.balance == "consistent_hash":
            try:
                compile_hash_key(upstream.hash_key)
            except ValueError as exc:
                raise FieldError(f"{where}.hash_key", str(exc)) from None
        for name in ("connect_timeout", "read_timeout", "idle_timeout"):
            if getattr(upstream, name) <= 0:
                raise FieldError(f"{where}.{name}", "must be greater than zero")
        if not 0 <= upstream.connect_retries <= 10:
            raise FieldError(f"{where}.connect_retries", "must be between 0 and 10")
        for name in ("max_concurrent_requests", "max_connections", "max_pending_requests"):
            if getattr(upstream, name) < 0:
                raise FieldError(f"{where}.{name}", "cannot be negative")
        if not 0.0 <= upstream.breaker_error_ratio <= 1.0:
            raise FieldError(f"{where}.breaker_error_ratio", "must be between 0 and 1")
        if upstream.breaker_error_ratio and (upstream.breaker_min_requests < 1 or upstream.breaker_window <= 0
                                             or upstream.breaker_open_time <= 0):
            raise FieldError(f"{where}.breaker_error_ratio",
                             "needs breaker_min_requests >= 1 and breaker_window, breaker_open_time > 0")
        if not 0 <= upstream.retries <= 10:
            raise FieldError(f"{where}.retries", "must be between 0 and 10")
        if upstream.eject_after_failures < 0 or not 0.0 <= upstream.max_ejected <= 1.0:
            raise FieldError(f"{where}.eject_after_failures", "needs eject_after_failures >= 0 and max_ejected in 0..1")
        if not 0.0 <= upstream.retry_budget <= 1.0:
            raise FieldError(f"{where}.retry_budget", "must be between 0 and 1")
        for j, status in enumerate(upstream.retry_on_status):
            if not 500 <= status <= 599:
                raise FieldError(f"{where}.retry_on_status[{j}]", "only 5xx statuses can be retried")
        if upstream.max_idle_connections < 0 or upstream.max_requests_per_connection < 0:
            raise FieldError(where, "pool sizes cannot be negative")
        if not 1 <= upstream.max_streams_per_connection <= _MAX_STREAMS:
            raise FieldError(f"{where}.max_streams_per_connection", f"must be between 1 and {_MAX_STREAMS}")
        if upstream.health is not None:
            health_settings.validate(upstream.health, f"{where}.health")
            if upstream.health.grpc_service is not None and upstream.protocol != "h2":
                raise FieldError(f"{where}.health.grpc_service", 'gRPC health checks need protocol = "h2"')
        _check_upstream_tls(upstream, where)
    for i, route in enumerate(config.routes):
        _check_route(route, f"routes[{i}]", names)
    _check_observability(config)
    validate_limits(config.ratelimit, [(route_name(route, i), route.limits) for i, route in enumerate(config.routes)])
    if config.events is not None:
        _check_events(config.events)


_MAX_WINDOW = (1 << 31) - 1
"""The largest HTTP/2 flow-control window (RFC 9113 6.9.1)."""
_HTTP2_RANGES = (
    ("max_concurrent_streams", 1, 65535, "between 1 and 65535"),
    ("max_frame_size", 1 << 14, (1 << 24) - 1, "between 16KiB and 16MiB-1 (16384 and 16777215 bytes)"),
    ("header_table_size", 0, 1 << 16, "at most 64KiB"),
    ("initial_window_size", 1, _MAX_WINDOW, "between 1 byte and 2GiB-1"),
    ("connection_window_size", 65535, _MAX_WINDOW, "between 65535 bytes and 2GiB-1"),
    ("response_buffer_size", 1, 1 << 30, "between 1 byte and 1GiB"),
    ("max_resets", 1, 1 << 20, "between 1 and 1048576"),
    ("max_overhead_frames", 1, 1 << 20, "between 1 and 1048576"),
)


def _check_http2(config: Config) -> None:
    http2 = config.http2
    for name, low, high, reason in _HTTP2_RANGES:
        if not low <= getattr(http2, name) <= high:
            raise FieldError(f"http2.{name}", f"must be {reason}")
    if http2.max_header_list_size is not None and not 1 <= http2.max_header_list_size <= 1 << 24:
        raise FieldError("http2.max_header_list_size", "must be between 1 byte and 16MiB")
    for name in ("reset_window", "overhead_window"):
        if getattr(http2, name) <= 0:
            raise FieldError(f"http2.{name}", "must be greater than zero")


def _check_listener_tls(listener, where: str) -> None:
    """What can be said of a listener's TLS fields without reading a file (compile_listeners reads them)."""
    redirect = listener.redirect_https
    if redirect is not True and redirect is not False and not 1 <= redirect <= 65535:
        raise FieldError(f"{where}.redirect_https", "must be true (port 443), false, or the https port (1-65535)")
    tls = listener.tls
    if tls is None:
        return
    if redirect is not False:
        raise FieldError(f"{where}.redirect_https", "a TLS listener cannot redirect to https; give it to a plain one")
    if not tls.certificates and tls.acme is None:
        raise FieldError(f"{where}.tls.certificates", "at least one certificate is needed (or an acme table)")
    for j, certificate in enumerate(tls.certificates):
        for name in ("cert", "key"):
            if not getattr(certificate, name):
                raise FieldError(f"{where}.tls.certificates[{j}].{name}", "must name a PEM file")
    if tls.ciphers and tls.min_version == "1.3":
        raise FieldError(f"{where}.tls.ciphers", "only TLS 1.2 suites can be chosen, and min_version is \"1.3\"")
    if not 0 < tls.handshake_timeout <= 300:
        raise FieldError(f"{where}.tls.handshake_timeout", "must be greater than zero and at most 5m")


_DNS_NAME = re.compile(r"^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$")


def _check_acme(config: Config, acme, where: str, acme_by_name: dict[str, object]) -> None:
    """A listener's tls.acme table; ``acme_by_name`` holds the tables seen so far by first name."""
    if not acme.names:
        raise FieldError(f"{where}.names", "at least one DNS name is needed")
    for j, name in enumerate(acme.names):
        bare = name.lower().rstrip(".")
        if bare.startswith("*."):
            raise FieldError(f"{where}.names[{j}]", "a wildcard needs a DNS-01 challenge; fastgate answers "
                                                     "HTTP-01 and TLS-ALPN-01 only")
        if not _DNS_NAME.match(bare) or bare.replace(".", "").isdigit() or ":" in bare:
            raise FieldError(f"{where}.names[{j}]", f"{name!r} is not a DNS name")
    if not acme.directory.startswith("https://"):
        raise FieldError(f"{where}.directory", "an ACME directory is an https:// URL (RFC 8555)")
    if acme.email and (acme.email.count("@") != 1 or any(c.isspace() or c in ",:<>" for c in acme.email)):
        raise FieldError(f"{where}.email", f"{acme.email!r} is not an email address")
    if not acme.storage:
        raise FieldError(f"{where}.storage", "must name a directory")
    for name in ("renew_before", "retry_backoff"):
        if getattr(acme, name) <= 0:
            raise FieldError(f"{where}.{name}", "must be greater than zero")
    if acme.challenge == HTTP01 and not any(listener.tls is None for listener in config.listeners):
        raise FieldError(where, "the CA's HTTP-01 challenges are answered on a plain listener, and there is "
                                "none: add one (the CA connects to port 80), or use challenge = \"tls-alpn-01\"")
    if importlib.util.find_spec("acme") is None:
        raise FieldError(where, "needs certbot's acme package: pip install 'fastgate[acme]'")
    first = acme.names[0].lower().rstrip(".")
    other = acme_by_name.setdefault(first, acme)
    if other != acme:
        raise FieldError(where, f"another listener's acme table is for {first!r} with other settings; "
                                "give both the same table")


_MAX_STREAMS = 2**31 - 1
"""HTTP/2 stream ids are 31 bits."""
_TLS_UPSTREAM_FIELDS = ("tls_ca_file", "tls_server_name", "tls_client_cert", "tls_client_key")


def _check_upstream_tls(upstream, where: str) -> None:
    if not upstream.tls:
        for name in _TLS_UPSTREAM_FIELDS:
            if getattr(upstream, name):
                raise FieldError(f"{where}.{name}", "only used with tls = true")
        if not upstream.tls_verify:
            raise FieldError(f"{where}.tls_verify", "only used with tls = true")
        return
    if bool(upstream.tls_client_cert) != bool(upstream.tls_client_key):
        missing = "tls_client_key" if upstream.tls_client_cert else "tls_client_cert"
        raise FieldError(f"{where}.{missing}", "a client certificate needs both tls_client_cert and tls_client_key")
    if upstream.tls_server_name and not _HOST_NAME.match(upstream.tls_server_name):
        raise FieldError(f"{where}.tls_server_name", f"{upstream.tls_server_name!r} is not a host name")


_HOST_NAME = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9.\-]*[A-Za-z0-9])?$")


def _check_observability(config: Config) -> None:
    access_log, tracing = config.access_log, config.tracing
    if not access_log.path:
        raise FieldError("access_log.path", 'must be a file path, "stdout" or "off"')
    if not 1024 <= access_log.buffer <= 64 * 1024 * 1024:
        raise FieldError("access_log.buffer", "must be between 1KiB and 64MiB")
    if not 0.0 <= tracing.sample_ratio <= 1.0:
        raise FieldError("tracing.sample_ratio", "must be between 0 and 1")
    if tracing.otlp_endpoint:
        try:
            parse_endpoint(tracing.otlp_endpoint)
        except ValueError as exc:
            raise FieldError("tracing.otlp_endpoint", str(exc)) from None
        try:
            check_installed()
        except ImportError:
            raise FieldError("tracing.otlp_endpoint", "needs opentelemetry-proto: pip install 'fastgate[otlp]'") from None
    if not 1 <= tracing.export_batch <= tracing.export_queue:
        raise FieldError("tracing.export_batch", "must be at least 1 and at most tracing.export_queue")
    if tracing.export_timeout <= 0:
        raise FieldError("tracing.export_timeout", "must be greater than zero")


_GRPC_METHOD = re.compile(r"^/[A-Za-z0-9_.]+/(?:[A-Za-z0-9_]+|\*)$")
"""A gRPC method path, or a service's with "*" for its methods."""
_ROUTE_UPSTREAM_FIELDS = ("connect_timeout", "try_timeout", "total_timeout", "idle_timeout", "retries")
"""Route fields that override the upstream's, for forwarded requests only."""


def _check_route(route, where: str, upstream_names: set[str]) -> None:
    if (route.upstream is not None) + (route.respond is not None) + bool(route.aggregate) != 1:
        raise FieldError(where, "needs exactly one of upstream, respond and aggregate")
    if route.upstream is not None and route.upstream not in upstream_names:
        raise FieldError(f"{where}.upstream", f"no upstream named {route.upstream!r}")
    for name in _ROUTE_UPSTREAM_FIELDS:
        value = getattr(route, name)
        if value is None:
            continue
        if route.upstream is None:
            raise FieldError(f"{where}.{name}", "only a route with an upstream can set it")
        if name in ("connect_timeout", "idle_timeout") and value <= 0:
            raise FieldError(f"{where}.{name}", "must be greater than zero")
        if name == "retries" and not 0 <= value <= 10:
            raise FieldError(f"{where}.retries", "must be between 0 and 10")
    paths = [k for k in ("path", "path_prefix", "path_regex") if getattr(route, k) is not None]
    if len(paths) > 1:
        raise FieldError(where, f"give at most one of path, path_prefix, path_regex (got {', '.join(paths)})")
    for key in ("path", "path_prefix"):
        value = getattr(route, key)
        if value is not None and not value.startswith("/"):
            raise FieldError(f"{where}.{key}", "must start with '/'")
    if route.path_regex is not None:
        try:
            re.compile(route.path_regex)
        except re.error as exc:
            raise FieldError(f"{where}.path_regex", f"not a valid regular expression: {exc}") from None
    if route.prefix_rewrite is not None:
        if route.path_prefix is None:
            raise FieldError(f"{where}.prefix_rewrite", "needs path_prefix")
        if not route.prefix_rewrite.startswith("/"):
            raise FieldError(f"{where}.prefix_rewrite", "must start with '/'")
    for j, method in enumerate(route.methods):
        if not _TOKEN.match(method) or method != method.upper():
            raise FieldError(f"{where}.methods[{j}]", f"{method!r} is not an upper-case method name")
    for j, method in enumerate(route.grpc_retry_methods):
        if route.upstream is None:
            raise FieldError(f"{where}.grpc_retry_methods", "only a route with an upstream can set it")
        if not _GRPC_METHOD.match(method):
            raise FieldError(f"{where}.grpc_retry_methods[{j}]",
                             f"{method!r} is not \"/package.Service/Method\" or \"/package.Service/*\"")
    for key in ("match_headers", "match_query", "match_cookies"):
        for j, matcher in enumerate(getattr(route, key)):
            _check_matcher(matcher, f"{where}.{key}[{j}]", key)
    for j, host in enumerate(route.hosts):
        bare = host[2:] if host.startswith("*.") else host
        if not bare or "*" in bare or not re.match(r"^[A-Za-z0-9.\-\[\]:]+$", bare):
            raise FieldError(f"{where}.hosts[{j}]", f"{host!r} is not a host name or *.wildcard")
    if route.respond is not None and not 200 <= route.respond.status <= 599:
        raise FieldError(f"{where}.respond.status", "must be between 200 and 599")
    for side in ("request_headers", "response_headers"):
        edits = getattr(route, side)
        for kind in ("set", "add"):
            for name, value in getattr(edits, kind).items():
                if not _TOKEN.match(name):
                    raise FieldError(f"{where}.{side}.{kind}", f"{name!r} is not a header name")
                if any(c in value for c in "\r\n\0"):
                    raise FieldError(f"{where}.{side}.{kind}.{name}", "a header value cannot hold CR, LF or NUL")
        for j, name in enumerate(edits.remove):
            if not _TOKEN.match(name):
                raise FieldError(f"{where}.{side}.remove[{j}]", f"{name!r} is not a header name")
    if route.host_rewrite is not None and not re.match(r"^[A-Za-z0-9.\-\[\]:]+$", route.host_rewrite):
        raise FieldError(f"{where}.host_rewrite", "is not a host name")
    if route.aggregate:
        _check_aggregate(route, where, upstream_names)


_MATCHER_TESTS = ("exact", "prefix", "regex", "present")


def _check_matcher(matcher, where: str, key: str) -> None:
    """One entry of a route's match_headers, match_query or match_cookies (routing/match.py)."""
    if not matcher.name:
        raise FieldError(f"{where}.name", "must not be empty")
    if key != "match_query" and not _TOKEN.match(matcher.name):
        what = "header" if key == "match_headers" else "cookie"
        raise FieldError(f"{where}.name", f"{matcher.name!r} is not a {what} name")
    tests = [t for t in _MATCHER_TESTS if getattr(matcher, t) is not None]
    if len(tests) != 1:
        got = f" (got {', '.join(tests)})" if tests else ""
        raise FieldError(where, f"needs exactly one of exact, prefix, regex and present{got}")
    if matcher.regex is not None:
        try:
            re.compile(matcher.regex.encode())
        except re.error as exc:
            raise FieldError(f"{where}.regex", f"not a valid regular expression: {exc}") from None
    if key != "match_query":
        for test in ("exact", "prefix"):
            value = getattr(matcher, test)
            if value is not None and any(c in value for c in "\r\n\0"):
                raise FieldError(f"{where}.{test}",
                                 "a value read from a header never holds CR, LF or NUL: it would never match")


_AGGREGATE_METHODS = ("GET", "HEAD")
_PART_PATH = re.compile(r"^/[!\"$-~]*$")
"""A request target: printable ASCII without spaces or '#'."""


def _check_aggregate(route, where: str, upstream_names: set[str]) -> None:
    if route.aggregate_timeout <= 0:
        raise FieldError(f"{where}.aggregate_timeout", "must be greater than zero")
    for j, method in enumerate(route.methods):
        if method not in _AGGREGATE_METHODS:
            raise FieldError(f"{where}.methods[{j}]", "an aggregate route answers only GET and HEAD")
    keys: set[str] = set()
    for j, part in enumerate(route.aggregate):
        at = f"{where}.aggregate[{j}]"
        if not part.key or part.key == "errors":
            raise FieldError(f"{at}.key", "must not be empty or \"errors\" (the failed parts go there)")
        if part.key in keys:
            raise FieldError(f"{at}.key", f"{part.key!r} is used by another part of this route")
        keys.add(part.key)
        if part.upstream not in upstream_names:
            raise FieldError(f"{at}.upstream", f"no upstream named {part.upstream!r}")
        if part.path is not None and not _PART_PATH.match(part.path):
            raise FieldError(f"{at}.path", "must start with '/' and be printable ASCII without spaces or '#' "
                                             "(percent-encode the rest)")
        if part.timeout is not None and not 0 < part.timeout <= route.aggregate_timeout:
            raise FieldError(f"{at}.timeout", f"must be greater than zero and at most the route's "
                                              f"aggregate_timeout ({route.aggregate_timeout:g}s)")
        if part.max_size <= 0:
            raise FieldError(f"{at}.max_size", "must be greater than zero")


_EVENT_SCHEMES = {"nats": ("nats", "tls"), "redis": ("redis", "rediss", "unix")}
_TLS_SCHEMES = ("tls", "rediss")


def _check_events(events: Events) -> None:
    schemes = _EVENT_SCHEMES[events.sink]
    try:
        url = urlsplit(events.url)
        port = url.port
    except ValueError as exc:
        raise FieldError("events.url", f"{events.url!r} is not a url: {exc}") from None
    if url.scheme not in schemes:
        raise FieldError("events.url", f"sink = {events.sink!r} needs a {' or '.join(s + '://' for s in schemes)} url")
    if url.scheme == "unix" and not url.path:
        raise FieldError("events.url", "a unix:// url needs the path of the socket")
    if url.scheme != "unix" and (not url.hostname or port == 0):
        raise FieldError("events.url", f"{events.url!r} needs a host (and a port other than 0)")
    if events.sink == "nats":
        tokens = events.subject.split(".")
        if any(not t or t in ("*", ">") or any(c.isspace() for c in t) for t in tokens):
            raise FieldError("events.subject", f"{events.subject!r} is not a NATS subject to publish on "
                             "(dot-separated tokens, no spaces, no wildcards)")
        if importlib.util.find_spec("nats") is None:
            raise FieldError("events.sink", "needs the nats-py package: pip install 'fastgate[events]'")
    elif not events.subject:
        raise FieldError("events.subject", "the stream key must not be empty")
    if not 1 <= events.max_batch <= 10000:
        raise FieldError("events.max_batch", "must be between 1 and 10000")
    if not 1 <= events.max_buffer <= 10_000_000:
        raise FieldError("events.max_buffer", "must be between 1 and 10000000")
    if events.stream_max_len < 0:
        raise FieldError("events.stream_max_len", "cannot be negative (0: never trim)")
    if not 0 < events.timeout <= 60:
        raise FieldError("events.timeout", "must be greater than zero and at most 60s")
    if events.tls_ca_file:
        if url.scheme not in _TLS_SCHEMES:
            raise FieldError("events.tls_ca_file", "only used with a tls:// or rediss:// url")
        if not os.path.isfile(events.tls_ca_file):
            raise FieldError("events.tls_ca_file", f"no such file: {events.tls_ca_file}")


def parse_address(text: str, field: str) -> tuple[str, int]:
    """Split "host:port" or "[v6]:port" into (host, port); raise FieldError naming ``field``."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise FieldError(field, f"{text!r} is not host:port")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not host:
        raise FieldError(field, f"{text!r} has no host")
    return host, int(port)
