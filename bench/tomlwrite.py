"""Write a dict as TOML: just enough for the fastgate configs the harness generates.

Values may be str, bool, int, float, lists of those, and dicts (written as
inline tables inside lists or values, as ``[table]`` at the top level); a
list of dicts at the top level becomes an array of tables ``[[name]]``.
"""

import json
import re

_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


def _key(k: str) -> str:
    return k if _BARE_KEY.match(k) else json.dumps(k)


def _value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)  # a JSON string is a valid TOML basic string
    if isinstance(v, list):
        return "[" + ", ".join(map(_value, v)) + "]"
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{_key(k)} = {_value(x)}" for k, x in v.items()) + " }"
    raise TypeError(f"cannot write {type(v).__name__} as TOML")


def _pairs(table: dict) -> list[str]:
    return [f"{_key(k)} = {_value(v)}" for k, v in table.items()]


def dumps(document: dict) -> str:
    scalars, tables = [], []
    for name, v in document.items():
        if isinstance(v, dict):
            tables += [f"[{_key(name)}]", *_pairs(v), ""]
        elif isinstance(v, list) and v and all(isinstance(x, dict) for x in v):
            for table in v:
                tables += [f"[[{_key(name)}]]", *_pairs(table), ""]
        else:
            scalars.append(f"{_key(name)} = {_value(v)}")
    return "\n".join(scalars + tables)
