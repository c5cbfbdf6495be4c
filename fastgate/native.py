"""Where the optional C speedups are found (setup.py builds them when it can).

Every speedup has a pure-Python twin that is the reference: same inputs,
same results, the same tests. ``speedup(name)`` is the module, or None when
it was not built or ``FASTGATE_PURE_PYTHON=1`` asks for the Python path
(for comparison, and to run the tests against it).
"""

import importlib
import os

PURE_PYTHON = os.environ.get("FASTGATE_PURE_PYTHON", "") not in ("", "0")
SPEEDUPS = ("observe._native_counts", "observe._native_jsonline", "ratelimit._native_table")
"""Every speedup (setup.py builds them)."""


def speedup(name: str):
    """The built module ``fastgate.<name>``, or None."""
    if PURE_PYTHON:
        return None
    try:
        return importlib.import_module(f"fastgate.{name}")
    except ImportError:
        return None


def summary() -> str:
    """Which speedups are in use, for ``fastgate -V``."""
    if PURE_PYTHON:
        return "C speedups off (FASTGATE_PURE_PYTHON)"
    built = [name.rpartition("._native_")[2] for name in SPEEDUPS if speedup(name) is not None]
    if not built:
        return "C speedups not built (pure Python)"
    return f"C speedups: {', '.join(built)}" + ("" if len(built) == len(SPEEDUPS) else " (the others: pure Python)")
