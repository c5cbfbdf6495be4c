"""The bench's nginx serves HTTP/2 with the syntax of the installed version: ``http2 on;``
from 1.25.1, the ``http2`` parameter of ``listen`` before it."""

from pathlib import Path

import pytest

from bench.peers import nginx
from bench.peers.base import ProxySpec


def spec(tls: bool, http2: bool) -> ProxySpec:
    pems = (Path("cert.pem"), Path("key.pem")) if tls else None
    return ProxySpec(Path("/nonexistent"), 8443, 8080, 1, frozenset(), 100, tls=pems, http2=http2)


@pytest.mark.parametrize(("version", "tls", "expected"), [
    ((1, 22, 1), True, ["listen 127.0.0.1:8443 ssl http2 reuseport backlog=1024;"]),
    ((1, 22, 1), False, ["listen 127.0.0.1:8443 http2 reuseport backlog=1024;"]),
    ((1, 25, 1), True, ["listen 127.0.0.1:8443 ssl reuseport backlog=1024;", "http2 on;"]),
    ((1, 27, 0), False, ["listen 127.0.0.1:8443 reuseport backlog=1024;", "http2 on;"]),
])
def test_http2_is_switched_on_as_the_version_says(monkeypatch, version, tls, expected):
    monkeypatch.setattr(nginx, "_build", lambda: (version, ""))
    assert nginx._listen(spec(tls, http2=True)) == expected


@pytest.mark.parametrize("version", [(1, 22, 1), (1, 25, 1)])
def test_http11_scenarios_get_no_http2(monkeypatch, version):
    monkeypatch.setattr(nginx, "_build", lambda: (version, ""))
    assert nginx._listen(spec(True, http2=False)) == ["listen 127.0.0.1:8443 ssl reuseport backlog=1024;"]
