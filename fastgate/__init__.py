"""fastgate: a multiprocess reverse proxy and API gateway on raw asyncio protocols."""

__version__ = "0.1.0"
