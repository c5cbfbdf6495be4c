"""Response aggregation without a network: the merged body, part targets, config checks and compilation."""

import msgspec
import pytest

from fastgate.config.errors import ConfigError
from fastgate.config.load import load_config
from fastgate.proxy.aggregate import PartError, PartSpec, merge, part_json
from fastgate.wire.h1 import new_request_parser, parse_request_head

BASE = ('[[listeners]]\naddress = "127.0.0.1:8080"\n'
        '[[upstreams]]\nname = "users"\nservers = ["127.0.0.1:9000"]\n'
        '[[upstreams]]\nname = "orders"\nservers = ["127.0.0.1:9001"]\n')
DASHBOARD = ('[[routes]]\npath = "/dashboard"\n'
             '[[routes.aggregate]]\nkey = "user"\nupstream = "users"\npath = "/users/me"\ntimeout = "500ms"\n'
             '[[routes.aggregate]]\nkey = "orders"\nupstream = "orders"\npath = "/orders?limit=5"\nrequired = false\n')


def load(tmp_path, text: str):
    path = tmp_path / "gate.conf"
    path.write_text(text)
    return load_config(str(path))


def head(target: bytes):
    raw = b"GET " + target + b" HTTP/1.1\r\nHost: gw.test\r\n\r\n"
    return parse_request_head(raw, 8192, 100, new_request_parser())


def test_merge_copies_part_json_as_received_and_lists_failures():
    values = {"user": part_json(b' {"id": 7, "score": 1.50} '), "orders": None}
    errors = {"orders": PartError(504, "upstream timed out")}
    assert merge(values, errors) == (b'{"user":{"id": 7, "score": 1.50},"orders":null,'
                                     b'"errors":{"orders":{"status":504,"error":"upstream timed out"}}}')
    assert merge({"a": part_json(b"[]"), "b": part_json(b'"x"')}, {}) == b'{"a":[],"b":"x"}'


@pytest.mark.parametrize("body", [b"", b"{", b"not json", b"{} {}", b'{"a": 1,}', b"\xff"])
def test_a_body_that_is_not_one_json_value_is_refused(body):
    with pytest.raises(msgspec.DecodeError):
        part_json(body)


class _Route:
    def upstream_target(self, target: bytes) -> bytes:
        return b"/rewritten" + target


@pytest.mark.parametrize("path,target,expected", [
    ("/users/me", b"/dashboard", b"/users/me"),
    ("/users/me", b"/dashboard?x=1&y=2", b"/users/me?x=1&y=2"),
    ("/orders?limit=5", b"/dashboard?x=1", b"/orders?limit=5&x=1"),
    ("/orders?limit=5", b"/dashboard", b"/orders?limit=5"),
    (None, b"/dashboard?x=1", b"/rewritten/dashboard?x=1"),
])
def test_part_target_appends_the_client_query(path, target, expected):
    spec = PartSpec("k", None, path, 1.0, True, 1024)
    assert spec.target(head(target), _Route()) == expected


def test_aggregate_route_compiles(tmp_path):
    loaded = load(tmp_path, BASE + DASHBOARD)
    route = loaded.router.any_host[0]
    (aggregate_filter,) = route.filters.request
    parts = aggregate_filter.aggregate.parts
    assert [(p.key, p.group.name, p.path, p.timeout_s, p.required, p.max_bytes) for p in parts] == [
        ("user", "users", b"/users/me", 0.5, True, 1 << 20),
        ("orders", "orders", b"/orders?limit=5", 5.0, False, 1 << 20),  # default: the route's aggregate_timeout
    ]
    extra = route.request_edits.extra
    assert b"\r\nAccept: application/json" in extra and b"\r\nAccept-Encoding: identity" in extra
    assert route.request_edits.spans(b"GET / HTTP/1.1\r\nRange: bytes=0-1\r\nIf-None-Match: x\r\nA: b\r\n\r\n")


@pytest.mark.parametrize("text,field,reason", [
    (BASE + DASHBOARD.replace('key = "orders"', 'key = "user"'), "routes[0].aggregate[1].key", "used by another part"),
    (BASE + DASHBOARD.replace('key = "orders"', 'key = "errors"'), "routes[0].aggregate[1].key", '"errors"'),
    (BASE + DASHBOARD.replace('upstream = "orders"', 'upstream = "billing"'), "routes[0].aggregate[1].upstream",
     "no upstream named 'billing'"),
    (BASE + DASHBOARD.replace('path = "/dashboard"', 'path = "/dashboard"\nupstream = "users"'), "routes[0]",
     "exactly one of upstream, respond and aggregate"),
    (BASE + DASHBOARD.replace('path = "/dashboard"', 'path = "/dashboard"\nrespond = {status = 200}'), "routes[0]",
     "exactly one of upstream, respond and aggregate"),
    (BASE + DASHBOARD.replace('path = "/users/me"', 'path = "users/me"'), "routes[0].aggregate[0].path",
     "must start with '/'"),
    (BASE + DASHBOARD.replace('path = "/users/me"', 'path = "/users/me now"'), "routes[0].aggregate[0].path",
     "without spaces"),
    (BASE + DASHBOARD.replace('timeout = "500ms"', 'timeout = "10s"'), "routes[0].aggregate[0].timeout",
     "at most the route's aggregate_timeout (5s)"),
    (BASE + DASHBOARD.replace('timeout = "500ms"', 'timeout = "0s"'), "routes[0].aggregate[0].timeout",
     "greater than zero"),
    (BASE + DASHBOARD.replace('path = "/dashboard"', 'path = "/dashboard"\naggregate_timeout = "0s"'),
     "routes[0].aggregate_timeout", "greater than zero"),
    (BASE + DASHBOARD.replace('path = "/dashboard"', 'path = "/dashboard"\nmethods = ["GET", "POST"]'),
     "routes[0].methods[1]", "only GET and HEAD"),
    (BASE + DASHBOARD.replace('required = false', 'required = false\nmax_size = "0"'),
     "routes[0].aggregate[1].max_size", "greater than zero"),
    (BASE + DASHBOARD.replace('required = false', 'requird = false'), "routes[0].aggregate[1]",
     "unknown field `requird`"),
    (BASE + DASHBOARD.replace('key = "user"\n', ''), "routes[0].aggregate[0]", "missing required field `key`"),
])
def test_bad_aggregate_config_names_the_field(tmp_path, text, field, reason):
    with pytest.raises(ConfigError) as info:
        load(tmp_path, text)
    assert info.value.field == field
    assert reason in info.value.reason
