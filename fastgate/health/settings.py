"""An upstream's ``health`` table checked and compiled: the statuses that pass, the probe request bytes."""

import re

from fastgate.config.errors import FieldError
from fastgate.config.schema import HealthCheck

_STATUS_CLASS = re.compile(r"^([1-5])xx$")
_HOST = re.compile(r"^[A-Za-z0-9.\-\[\]:]+$")
_MAX_RISE_FALL = 100


def validate(health: HealthCheck, where: str) -> None:
    """Raise FieldError (path below ``where``, e.g. "upstreams[0].health") for a bad health table."""
    if not health.path.startswith("/") or not all("!" <= c <= "~" for c in health.path):
        raise FieldError(f"{where}.path", "must start with '/' and hold only visible ASCII characters")
    if not health.expect:
        raise FieldError(f"{where}.expect", "at least one status is needed")
    for i, status in enumerate(health.expect):
        if isinstance(status, int) and not 100 <= status <= 599 or isinstance(status, str) and not _STATUS_CLASS.match(status):
            raise FieldError(f"{where}.expect[{i}]", f"{status!r} is not a status (100..599) or a class (\"2xx\")")
    if health.interval <= 0:
        raise FieldError(f"{where}.interval", "must be greater than zero")
    if not 0 < health.timeout < health.interval:
        raise FieldError(f"{where}.timeout", "must be greater than zero and shorter than interval")
    for name in ("rise", "fall"):
        if not 1 <= getattr(health, name) <= _MAX_RISE_FALL:
            raise FieldError(f"{where}.{name}", f"must be between 1 and {_MAX_RISE_FALL}")
    if health.host and not _HOST.match(health.host):
        raise FieldError(f"{where}.host", "is not a host name")


def expected_statuses(health: HealthCheck) -> frozenset[int]:
    """Every status that passes: numbers as given, "2xx" as 200..299."""
    statuses: set[int] = set()
    for status in health.expect:
        if isinstance(status, int):
            statuses.add(status)
        else:
            first = int(status[0]) * 100
            statuses.update(range(first, first + 100))
    return frozenset(statuses)


def probe_request(health: HealthCheck, address: str) -> bytes:
    """The complete GET request of a check of the server at ``address`` ("host:port")."""
    host = health.host or address
    return (f"GET {health.path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: fastgate-health-check\r\n"
            f"Accept: */*\r\nConnection: close\r\n\r\n").encode("latin-1")
