"""Fixtures shared by the tests: real upstream servers and fastgate processes, always stopped."""

from collections.abc import Iterator

import pytest

from tests.support.gateway import GatewayFactory
from tests.support.upstream import Upstream
from tests.support.ws_upstream import WsEchoUpstream


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "slow: moves hundreds of MiB or drives processes under load")


@pytest.fixture
def upstream() -> Iterator[Upstream]:
    """An HTTP origin server for one test (see tests/support/upstream.py)."""
    with Upstream() as server:
        yield server


@pytest.fixture
def three_upstreams() -> Iterator[list[Upstream]]:
    """Three origin servers for one test, for load balancing and retries."""
    servers = [Upstream().start() for _ in range(3)]
    try:
        yield servers
    finally:
        for server in servers:
            server.stop()


@pytest.fixture(scope="module")
def module_upstream() -> Iterator[Upstream]:
    """An HTTP origin server shared by a module's tests; they tell their requests apart by path."""
    with Upstream() as server:
        yield server


@pytest.fixture(autouse=True)
def _upstreams_receive_only_valid_http(request: pytest.FixtureRequest) -> Iterator[None]:
    """Whatever a test does, the gateway must never send its upstream malformed HTTP."""
    servers = [request.getfixturevalue(name) for name in ("upstream", "module_upstream")
               if name in request.fixturenames]
    before = [len(server.stats.protocol_errors) for server in servers]
    yield
    for server, count in zip(servers, before):
        assert server.stats.protocol_errors[count:] == [], "the upstream received malformed HTTP"


@pytest.fixture
def ws_upstream() -> Iterator[WsEchoUpstream]:
    with WsEchoUpstream() as server:
        yield server


@pytest.fixture
def gateways(tmp_path) -> Iterator[GatewayFactory]:
    """Starts fastgate processes for one test; all are stopped at its end, also on failure."""
    factory = GatewayFactory(tmp_path)
    try:
        yield factory
    finally:
        factory.close()


@pytest.fixture(scope="module")
def module_gateways(tmp_path_factory) -> Iterator[GatewayFactory]:
    """Like ``gateways``, for a gateway shared by a module's tests."""
    factory = GatewayFactory(tmp_path_factory.mktemp("gateways"))
    try:
        yield factory
    finally:
        factory.close()
