"""The running config as JSON, with secrets replaced."""

import re

import msgspec

from fastgate.config.units import Duration, Size

REDACTED = "<redacted>"
_SECRET_FIELDS = frozenset(("password", "sentinel_password", "token", "secret", "api_keys", "jwt_secret"))
_URL_CREDENTIALS = re.compile(r"^([a-z][a-z0-9+.-]*://)[^@/]*@", re.IGNORECASE)


def redacted_config(config) -> bytes:
    """``config`` (the msgspec Structs) as JSON; passwords, tokens and URL credentials are replaced.

    Durations are shown in seconds and sizes in bytes.
    """
    return msgspec.json.encode(_redact(msgspec.to_builtins(config, enc_hook=_plain_number)))


def _plain_number(value):
    if isinstance(value, (Duration, Size)):
        return value.__class__.__mro__[1](value)
    raise NotImplementedError(type(value))


def _redact(value):
    if isinstance(value, dict):
        return {key: (REDACTED if key in _SECRET_FIELDS and value[key] else _redact(item))
                for key, item in value.items()}
    if isinstance(value, list):
        return [_redact(item) for item in value]
    if isinstance(value, str):
        return _URL_CREDENTIALS.sub(lambda m: m.group(1) + REDACTED + "@", value)
    return value
