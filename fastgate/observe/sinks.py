"""The request sinks a config asks for (access log, event publishers), built in the worker."""

from fastgate.config.load import LoadedConfig
from fastgate.observe.events import build_event_sink


def build_sinks(loaded: LoadedConfig, loop) -> list:
    """Sinks for RequestObserver, in the order they receive each record."""
    sinks: list = []
    if loaded.config.events is not None:
        sinks.append(build_event_sink(loaded.config.events, loop))
    return sinks
