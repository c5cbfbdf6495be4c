"""What every client connection of one worker shares: config, clock, ids, limits."""

from fastgate.config.load import LoadedConfig
from fastgate.filters.chain import gateway_filters
from fastgate.observe.observer import RequestObserver
from fastgate.proxy.request_id import RequestIds
from fastgate.runtime.clock import Clock
from fastgate.transport.h2_settings import H2Limits
from fastgate.wire.target import PathRules


class WorkerContext:
    """Per-worker state read on the hot path, with limits pre-converted to plain numbers."""

    __slots__ = (
        "router", "clock", "request_ids", "early_filters", "connections", "draining", "max_line_bytes",
        "max_head_bytes", "max_headers", "header_timeout_s", "keepalive_timeout_s",
        "body_timeout_s", "send_timeout_s", "on_drained", "observer", "metrics", "path_rules", "http2",
    )

    def __init__(self, loaded: LoadedConfig, clock: Clock, observer: RequestObserver) -> None:
        http = loaded.config.http
        self.router = loaded.router
        self.clock = clock
        self.request_ids = RequestIds()
        """Makes the request ids of routes that want one (a prefix of this worker's own)."""
        self.early_filters = gateway_filters(loaded.config.tracing).early
        """The gateway-wide filters' ``early`` hooks (filters/chain.py): the trace context; empty when
        tracing is off."""
        self.observer = observer
        """The log phase (observe/observer.py)."""
        self.metrics = observer.metrics
        """Counters the request path bumps as things happen (observe/metrics.py)."""
        self.connections: set = set()
        """Open client connections, for drain and stop."""
        self.draining = False
        """Set on graceful stop: connections close after their current response."""
        self.on_drained = _nothing
        """Called when the last connection closes while draining."""
        self.max_line_bytes = int(http.max_request_line_size)
        self.max_head_bytes = int(http.max_header_size)
        self.max_headers = http.max_headers
        self.header_timeout_s = float(http.header_timeout)
        self.keepalive_timeout_s = float(http.keepalive_timeout)
        self.body_timeout_s = float(http.body_timeout)
        self.send_timeout_s = float(http.send_timeout)
        self.path_rules = PathRules(http.merge_slashes, http.encoded_slashes == "keep")
        """How request paths are normalised before routing (wire/target.py)."""
        self.http2 = H2Limits(loaded.config.http2, http)
        """The ``[http2]`` limits of HTTP/2 client connections (transport/h2_settings.py)."""


def _nothing() -> None:
    pass
