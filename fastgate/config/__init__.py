"""Configuration: the TOML schema, its loading and compilation into runtime objects."""

from fastgate.config.errors import ConfigError
from fastgate.config.load import load_config

__all__ = ["ConfigError", "load_config"]
