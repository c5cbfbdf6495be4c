"""Readable durations ("250ms", "5s", "2m") and sizes ("16KiB", "1MiB") for the config.

``Duration`` is a float of seconds and ``Size`` an int of bytes, so compiled
code uses them as plain numbers. ``decode_hook`` is the msgspec ``dec_hook``
that turns the config's strings (or bare numbers) into them.
"""

import re

DURATION_PATTERN = r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)\s*$"
"""A duration written as text (a bare number of seconds is also one); the JSON Schema uses it too."""
_DURATION = re.compile(DURATION_PATTERN)
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
SIZE_PATTERN = r"^\s*(\d+)\s*(B|KiB|MiB|GiB|KB|MB|GB|k|K|M|G)?\s*$"
"""A size written as text (a bare integer of bytes is also one); the JSON Schema uses it too."""
_SIZE = re.compile(SIZE_PATTERN)
_SIZE_UNITS = {
    None: 1, "B": 1,
    "KiB": 1024, "MiB": 1024**2, "GiB": 1024**3,
    "k": 1024, "K": 1024, "M": 1024**2, "G": 1024**3,
    "KB": 1000, "MB": 1000**2, "GB": 1000**3,
}


class Duration(float):
    """Seconds, written in the config as "250ms", "5s", "2m", "1h", "30d" or a number of seconds."""


class Size(int):
    """Bytes, written in the config as "512", "16KiB", "1MiB", "1GiB" (or KB/MB/GB for powers of 1000)."""


def parse_duration(value: object) -> Duration:
    if isinstance(value, bool):
        raise ValueError(f"expected a duration such as '5s' or '250ms', got {value!r}")
    if isinstance(value, (int, float)):
        seconds = float(value)
    elif isinstance(value, str) and (m := _DURATION.match(value)):
        seconds = float(m.group(1)) * _DURATION_UNITS[m.group(2)]
    else:
        raise ValueError(f"expected a duration such as '5s' or '250ms', got {value!r}")
    if seconds < 0:
        raise ValueError(f"a duration cannot be negative, got {value!r}")
    return Duration(seconds)


def parse_size(value: object) -> Size:
    if isinstance(value, bool):
        raise ValueError(f"expected a size such as '16KiB' or '1MiB', got {value!r}")
    if isinstance(value, int):
        size = value
    elif isinstance(value, str) and (m := _SIZE.match(value)):
        size = int(m.group(1)) * _SIZE_UNITS[m.group(2)]
    else:
        raise ValueError(f"expected a size such as '16KiB' or '1MiB', got {value!r}")
    if size < 0:
        raise ValueError(f"a size cannot be negative, got {value!r}")
    return Size(size)


def decode_hook(type_: type, value: object) -> object:
    if type_ is Duration:
        return parse_duration(value)
    if type_ is Size:
        return parse_size(value)
    raise NotImplementedError(type_)
