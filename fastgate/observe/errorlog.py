"""The error log: Python logging to stderr or a file, reopened on SIGUSR1."""

import logging
import sys

_FORMAT = "%(asctime)s %(levelname)s [%(process)d] %(name)s: %(message)s"

log = logging.getLogger("fastgate")


def setup(target: str, level: str) -> None:
    """Send fastgate's log to ``target`` ("stderr" or a path) at ``level``."""
    for handler in list(log.handlers):
        log.removeHandler(handler)
        handler.close()
    handler = logging.StreamHandler(sys.stderr) if target == "stderr" else logging.FileHandler(target)
    handler.setFormatter(logging.Formatter(_FORMAT))
    log.addHandler(handler)
    log.setLevel(level.upper())
    log.propagate = False


def reopen() -> None:
    """Reopen a file log (after logrotate moved it)."""
    for handler in list(log.handlers):
        if isinstance(handler, logging.FileHandler):
            log.removeHandler(handler)
            handler.close()
            new = logging.FileHandler(handler.baseFilename)
            new.setFormatter(handler.formatter)
            log.addHandler(new)
