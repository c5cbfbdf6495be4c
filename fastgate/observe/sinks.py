"""The request sinks a config asks for (access log, event publishers), built in the worker."""

from typing import TYPE_CHECKING

from fastgate.observe.accesslog import AccessLog
from fastgate.observe.events import build_event_sink

if TYPE_CHECKING:  # a type name only: observe/ does not depend on the config loader
    from fastgate.config.load import LoadedConfig


def build_sinks(loaded: "LoadedConfig", loop) -> list:
    """Sinks for RequestObserver, in the order they receive each record."""
    sinks: list = []
    access_log = loaded.config.access_log
    if access_log.path != "off":
        sinks.append(AccessLog(access_log.path, access_log.format, int(access_log.buffer)))
    if loaded.config.events is not None:
        sinks.append(build_event_sink(loaded.config.events, loop))
    return sinks


def build_span_exporter(loaded: "LoadedConfig", loop):
    """The OTLP span exporter, or None when tracing exports nothing."""
    tracing = loaded.config.tracing
    if not (tracing.enabled and tracing.otlp_endpoint):
        return None
    from fastgate.observe.otlp import SpanExporter  # needs the otlp extra (checked at load)

    return SpanExporter(tracing, loop)
