"""An upstream's ``discovery`` table checked at load (config/load.py), and its resolvers parsed."""

import importlib.util
import ipaddress
import re

from fastgate.config.errors import FieldError
from fastgate.config.schema import Upstream

_DNS_NAME = re.compile(r"^(?=.{1,253}\.?$)([A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9])?)"
                       r"(\.[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9])?)*\.?$")
"""A host name; SRV owner names start with "_service._proto" labels, hence the underscores."""
_MIN_INTERVAL_S = 1.0
_MAX_WEIGHT = 1000


def validate(upstream: Upstream, where: str) -> None:
    """Raise FieldError (path below ``where``, e.g. "upstreams[0]") for a bad discovery table."""
    discovery = upstream.discovery
    at = f"{where}.discovery"
    if upstream.servers:
        raise FieldError(f"{where}.servers", "an upstream with a discovery table takes its servers from DNS: "
                                             "leave servers out")
    if upstream.health is not None:
        raise FieldError(f"{where}.health", "active health checks do not follow discovered servers yet; "
                                            "passive health (eject_after_failures) does")
    if importlib.util.find_spec("dns") is None:
        raise FieldError(at, "needs the dnspython package: pip install 'fastgate[discovery]'")
    if not _DNS_NAME.match(discovery.name):
        raise FieldError(f"{at}.name", f"{discovery.name!r} is not a DNS name")
    if discovery.type == "SRV":
        if discovery.port:
            raise FieldError(f"{at}.port", "SRV records carry the servers' ports: leave port out")
    elif not 1 <= discovery.port <= 65535:
        raise FieldError(f"{at}.port", f"type {discovery.type} needs the servers' port (1-65535)")
    if not 1 <= discovery.weight <= _MAX_WEIGHT:
        raise FieldError(f"{at}.weight", f"must be between 1 and {_MAX_WEIGHT}")
    if discovery.interval < _MIN_INTERVAL_S:
        raise FieldError(f"{at}.interval", f"must be at least {_MIN_INTERVAL_S:g}s")
    if not 0 < discovery.timeout <= discovery.interval:
        raise FieldError(f"{at}.timeout", "must be greater than zero and at most interval")
    for i, resolver in enumerate(discovery.resolvers):
        try:
            parse_resolver(resolver)
        except ValueError as exc:
            raise FieldError(f"{at}.resolvers[{i}]", str(exc)) from None


def parse_resolver(text: str) -> tuple[str, int]:
    """ "ip", "ip:port", "[v6]:port" or a bare IPv6 address -> (ip, port); raise ValueError."""
    host, port = text, 53
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            raise ValueError(f"{text!r} is not ip, ip:port or [ipv6]:port")
        if rest:
            port = _port(rest[1:], text)
    elif text.count(":") == 1:
        host, _, rest = text.partition(":")
        port = _port(rest, text)
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(f"{text!r}: a resolver is an IP address (and port), not a name") from None
    return host, port


def _port(text: str, whole: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise ValueError(f"{whole!r} has no valid port")
    return int(text)
