"""The C speedups: optional extension modules next to the Python code they replace.

Each is built when a C compiler and the Python headers are present
(``optional=True``: a failed build leaves the pure-Python path, which
``fastgate.native`` falls back to). Metadata lives in pyproject.toml.
"""

from setuptools import Extension, setup

SPEEDUPS = ("observe._native_counts", "observe._native_jsonline", "ratelimit._native_table")
"""As in fastgate/native.py (not imported: the package's dependencies are not installed yet)."""

setup(ext_modules=[
    Extension(f"fastgate.{name}", [f"fastgate/{name.replace('.', '/')}.c"], include_dirs=["fastgate"],
              depends=["fastgate/_native_slots.h"], optional=True,
              extra_compile_args=["-Wall", "-Werror=implicit-function-declaration"])
    for name in SPEEDUPS
])
