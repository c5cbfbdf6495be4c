"""The running config as JSON, with secrets replaced."""

import re

import msgspec

REDACTED = "<redacted>"
_SECRET_FIELDS = frozenset(("password", "sentinel_password", "token", "secret", "api_keys", "jwt_secret"))
_URL_CREDENTIALS = re.compile(r"^([a-z][a-z0-9+.-]*://)[^@/]*@", re.IGNORECASE)


def redacted_config(config) -> bytes:
    """``config`` (the msgspec Structs) as JSON; passwords, tokens and URL credentials are replaced."""
    return msgspec.json.encode(_redact(msgspec.to_builtins(config)))


def _redact(value):
    if isinstance(value, dict):
        return {key: (REDACTED if key in _SECRET_FIELDS and value[key] else _redact(item))
                for key, item in value.items()}
    if isinstance(value, list):
        return [_redact(item) for item in value]
    if isinstance(value, str):
        return _URL_CREDENTIALS.sub(lambda m: m.group(1) + REDACTED + "@", value)
    return value
