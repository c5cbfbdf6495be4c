"""The request sinks a config asks for (access log, event publishers), built in the worker."""

from fastgate.config.load import LoadedConfig


def build_sinks(loaded: LoadedConfig, loop) -> list:
    """Sinks for RequestObserver, in the order they receive each record."""
    sinks: list = []
    return sinks
