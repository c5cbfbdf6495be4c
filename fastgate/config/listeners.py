"""The listeners as workers serve them, compiled once in the master (before fork).

Each ``[[listeners]]`` entry becomes a ``ListenerSpec``: its TLS contexts
(tls/server.py; made here, in the master, so the workers share their session
ticket keys), the X-Forwarded-Proto header its requests carry upstream, and,
for a plain listener with ``redirect_https``, a router of its own whose one
route answers every request with a 308 to https (filters/https_redirect.py).
"""

import os
from dataclasses import dataclass

from fastgate.config.errors import FieldError
from fastgate.config.schema import Config, Route as RouteConfig
from fastgate.filters.chain import FilterChain
from fastgate.filters.https_redirect import REDIRECT_ROUTE, HttpsRedirect
from fastgate.ratelimit import RateLimiter
from fastgate.routing.route import Route
from fastgate.routing.router import Router
from fastgate.tls.certificates import TlsSettingError
from fastgate.tls.server import ServerTls

@dataclass(frozen=True, slots=True)
class ListenerSpec:
    """One listener, compiled."""

    index: int
    """Its place in the config's listeners (the metrics' TLS series are per listener)."""
    label: str
    """Its name, else its address: the ``listener`` label of metrics."""
    key: tuple[str, int]
    """(host, port) it binds: the master's socket group for it (master/sockets.py)."""
    proto_header: bytes
    """``\\r\\nX-Forwarded-Proto: https`` on a TLS listener, ``...: http`` on a plain one."""
    tls: ServerTls | None
    """Its TLS contexts and handshake settings; None on a plain listener."""
    router: Router | None
    """A redirecting listener's own router (one route, the 308); None: the config's routes."""
    http2: bool = False
    """HTTP/2 is served beside HTTP/1.1: h2 by ALPN on a TLS listener (the default there), h2c with
    prior knowledge on a plain one (``http2 = true``)."""


def compile_listeners(config: Config, base_dir: str, limiter: RateLimiter) -> tuple[ListenerSpec, ...]:
    """The listeners of a checked config; certificate files are read (relative to ``base_dir``).
    Raise FieldError naming the field, e.g. ``listeners[0].tls.certificates[1].key``."""
    specs = []
    for i, listener in enumerate(config.listeners):
        tls = None
        if listener.tls is not None:
            settings = listener.tls
            files = [(resolve(base_dir, c.cert), resolve(base_dir, c.key)) for c in settings.certificates]
            try:
                tls = ServerTls(files, settings.min_version, settings.ciphers, float(settings.handshake_timeout),
                                listener.http2 is not False)
            except TlsSettingError as exc:
                raise FieldError(f"listeners[{i}].tls.{exc.field}", exc.reason) from None
        router = None
        if listener.redirect_https is not False:
            port = 443 if listener.redirect_https is True else int(listener.redirect_https)
            # one metrics block for all redirecting listeners, after the config's routes (observe/metrics.py)
            route = Route(RouteConfig(name=REDIRECT_ROUTE), len(config.routes), None, config.http, limiter)
            route.attach_filters(FilterChain((HttpsRedirect(port),)))
            router = Router([route], [[]])
        host, _, port_text = listener.address.rpartition(":")
        specs.append(ListenerSpec(
            i, listener.name or listener.address, (host.strip("[]"), int(port_text)),
            b"\r\nX-Forwarded-Proto: " + (b"https" if tls is not None else b"http"), tls, router,
            listener.http2 is not False if tls is not None else bool(listener.http2)))
    return tuple(specs)


def resolve(base_dir: str, path: str) -> str:
    """A file named in the config: relative paths are relative to the config file's directory."""
    return os.path.join(base_dir, os.path.expanduser(path)) if path else path
