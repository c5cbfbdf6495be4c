"""The one error type a config problem raises: it names the file, the field path and the reason."""


class ConfigError(Exception):
    """A config that cannot be used. ``str()`` reads ``file: field: reason``."""

    def __init__(self, file: str, field: str, reason: str) -> None:
        self.file = file
        self.field = field
        self.reason = reason
        where = f"{file}: {field}" if field else file
        super().__init__(f"{where}: {reason}")


class FieldError(Exception):
    """A problem at one field, raised while checking or compiling; load.py adds the file."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason
