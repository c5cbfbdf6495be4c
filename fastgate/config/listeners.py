"""The listeners as workers serve them, compiled once in the master (before fork).

Each ``[[listeners]]`` entry becomes a ``ListenerSpec``: its TLS contexts
(tls/server.py; made here, in the master, so the workers share their session
ticket keys), the X-Forwarded-Proto header its requests carry upstream, and,
for a plain listener with ``redirect_https``, a router of its own whose one
route answers every request with a 308 to https (filters/https_redirect.py).

A listener with ``tls.acme`` becomes a ManagedCertificate (acme/settings.py)
for the ACME manager; its certificate, when the storage has one for all its
names, is the listener's first (the default), ahead of ``certificates``;
without one and without ``certificates`` a self-signed placeholder serves
(tls/placeholder.py). The CA's HTTP-01 requests reach a built-in route
(``challenge_route``) on every router, the redirecting listeners' too; it
exists when some certificate is validated by HTTP-01. A listener whose
certificate is validated by TLS-ALPN-01 carries its ``TlsAlpnAnswers``.
"""

import os
from contextlib import ExitStack
from dataclasses import dataclass

from fastgate.acme.challenge import CHALLENGE_PREFIX, CHALLENGE_ROUTE, ChallengeAnswers
from fastgate.acme.settings import HTTP01, TLS_ALPN01, ManagedCertificate
from fastgate.acme.storage import CertificateStore
from fastgate.acme.tls_alpn_answers import TlsAlpnAnswers
from fastgate.config.errors import FieldError
from fastgate.config.schema import Config, Route as RouteConfig
from fastgate.filters.chain import FilterChain
from fastgate.filters.https_redirect import REDIRECT_ROUTE, HttpsRedirect
from fastgate.ratelimit import RateLimiter
from fastgate.routing.route import Route
from fastgate.routing.router import Router
from fastgate.tls.certificates import TlsSettingError
from fastgate.tls.placeholder import placeholder_files
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
    tls_alpn_answers: TlsAlpnAnswers | None = None
    """Its ACME certificate's TLS-ALPN-01 answers; None: its handshakes are not looked at first."""


def compile_acme(config: Config, base_dir: str) -> dict[int, ManagedCertificate]:
    """The managed certificate of each listener with ``tls.acme``, by listener index."""
    managed = {}
    for i, listener in enumerate(config.listeners):
        acme = listener.tls.acme if listener.tls is not None else None
        if acme is not None:
            managed[i] = ManagedCertificate(
                tuple(n.lower().rstrip(".") for n in acme.names), acme.directory, acme.email,
                os.path.abspath(resolve(base_dir, acme.storage)), float(acme.renew_before),
                float(acme.retry_backoff), resolve(base_dir, acme.directory_ca_file), acme.challenge)
    return managed


def challenge_route(config: Config, managed: dict[int, ManagedCertificate],
                    limiter: RateLimiter) -> tuple[Route, list[str]] | None:
    """The built-in route that answers the CA's HTTP-01 requests, and the managed names it serves
    (its hosts); None without a certificate validated by HTTP-01. Its metrics block follows the
    redirect route's (observe/metrics.py)."""
    managed = {i: m for i, m in managed.items() if m.challenge == HTTP01}
    if not managed:
        return None
    names = list(dict.fromkeys(name for m in managed.values() for name in m.names))
    index = len(config.routes) + any(listener.redirect_https is not False for listener in config.listeners)
    route = Route(RouteConfig(name=CHALLENGE_ROUTE, hosts=names, path_prefix=CHALLENGE_PREFIX), index, None,
                  config.http, limiter)
    route.attach_filters(FilterChain((ChallengeAnswers([m.storage for m in managed.values()]),)))
    return route, names


def compile_listeners(config: Config, base_dir: str, limiter: RateLimiter,
                      managed: dict[int, ManagedCertificate],
                      challenge: tuple[Route, list[str]] | None) -> tuple[ListenerSpec, ...]:
    """The listeners of a checked config; certificate files are read (relative to ``base_dir``).
    Raise FieldError naming the field, e.g. ``listeners[0].tls.certificates[1].key``."""
    specs = []
    for i, listener in enumerate(config.listeners):
        tls = answers = None
        if listener.tls is not None:
            tls = _server_tls(listener, f"listeners[{i}].tls", base_dir, managed.get(i))
            if i in managed and managed[i].challenge == TLS_ALPN01:
                answers = TlsAlpnAnswers(managed[i])
        router = None
        if listener.redirect_https is not False:
            port = 443 if listener.redirect_https is True else int(listener.redirect_https)
            # one metrics block for all redirecting listeners, after the config's routes (observe/metrics.py)
            route = Route(RouteConfig(name=REDIRECT_ROUTE), len(config.routes), None, config.http, limiter)
            route.attach_filters(FilterChain((HttpsRedirect(port),)))
            if challenge is None:
                router = Router([route], [[]])
            else:
                router = Router([challenge[0], route], [challenge[1], []])
        host, _, port_text = listener.address.rpartition(":")
        specs.append(ListenerSpec(
            i, listener.name or listener.address, (host.strip("[]"), int(port_text)),
            b"\r\nX-Forwarded-Proto: " + (b"https" if tls is not None else b"http"), tls, router,
            listener.http2 is not False if tls is not None else bool(listener.http2), answers))
    return tuple(specs)


def _server_tls(listener, where: str, base_dir: str, managed: ManagedCertificate | None) -> ServerTls:
    """A TLS listener's contexts: the ACME certificate (or its placeholder) first, then ``certificates``."""
    settings = listener.tls
    files = [(resolve(base_dir, c.cert), resolve(base_dir, c.key)) for c in settings.certificates]
    fields = [f"{where}.certificates[{j}]" for j in range(len(files))]
    with ExitStack() as stack:
        if managed is not None:
            stored = CertificateStore(managed).current()
            if stored is not None:
                files.insert(0, (stored.cert_path, stored.key_path))
                fields.insert(0, f"{where}.acme")
            elif not files:
                files.append(stack.enter_context(placeholder_files(managed.names)))
                fields.append(f"{where}.acme")
        try:
            return ServerTls(files, settings.min_version, settings.ciphers, float(settings.handshake_timeout),
                             listener.http2 is not False)
        except TlsSettingError as exc:
            raise FieldError(_field_of(exc.field, where, fields), exc.reason) from None


def _field_of(tls_field: str, where: str, fields: list[str]) -> str:
    """ServerTls names a file by its place in the list it was given ("certificates[1].key"): the
    config's field of that place, which the ACME certificate shifts by one."""
    if tls_field.startswith("certificates["):
        index, _, rest = tls_field[len("certificates["):].partition("]")
        return fields[int(index)] + rest
    return f"{where}.{tls_field}"


def resolve(base_dir: str, path: str) -> str:
    """A file named in the config: relative paths are relative to the config file's directory."""
    return os.path.join(base_dir, os.path.expanduser(path)) if path else path
