"""The error log: Python logging to stderr or a file, as text or JSON lines, reopened on SIGUSR1."""

import logging
import sys

import msgspec

_TEXT_FORMAT = "%(asctime)s %(levelname)s [%(process)d] %(name)s: %(message)s"

log = logging.getLogger("fastgate")


class ErrorLogEntry(msgspec.Struct, omit_defaults=True):
    """One line of the error log in the "json" format; field names are its JSON keys."""

    time: float
    """Unix time in seconds, as in the access log."""
    level: str
    """"debug", "info", "warning", "error" or "critical"."""
    pid: int
    logger: str
    message: str
    exception: str = ""
    """The traceback of the exception being logged; left out when there is none."""


class JsonFormatter(logging.Formatter):
    """Formats each log record as one JSON object (no newline inside: msgspec escapes them)."""

    def __init__(self) -> None:
        super().__init__()
        self._encode = msgspec.json.Encoder().encode

    def format(self, record: logging.LogRecord) -> str:
        entry = ErrorLogEntry(
            time=record.created, level=record.levelname.lower(), pid=record.process or 0,
            logger=record.name, message=record.getMessage(),
            exception=self.formatException(record.exc_info) if record.exc_info else "",
        )
        return self._encode(entry).decode()


_formatter: logging.Formatter = logging.Formatter(_TEXT_FORMAT)


def use_format(fmt: str) -> None:
    """Write "text" or "json" lines from now on (handlers set up later too)."""
    global _formatter
    _formatter = JsonFormatter() if fmt == "json" else logging.Formatter(_TEXT_FORMAT)
    for handler in log.handlers:
        handler.setFormatter(_formatter)


def setup(target: str, level: str) -> None:
    """Send fastgate's log to ``target`` ("stderr" or a path) at ``level``."""
    for handler in list(log.handlers):
        log.removeHandler(handler)
        handler.close()
    handler = logging.StreamHandler(sys.stderr) if target == "stderr" else logging.FileHandler(target)
    handler.setFormatter(_formatter)
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
