"""Rate strings and the checks of validate(): each problem is reported at its field."""

import msgspec
import pytest

from fastgate.config.errors import FieldError
from fastgate.config.units import decode_hook
from fastgate.ratelimit import Limit, RateLimitSettings, validate
from fastgate.ratelimit.rates import Rate, parse_rate


def settings(**table) -> RateLimitSettings:
    return msgspec.convert(table, RateLimitSettings, dec_hook=decode_hook)


def field_error(settings_, routes) -> tuple[str, str]:
    with pytest.raises(FieldError) as info:
        validate(settings_, routes)
    return info.value.field, info.value.reason


@pytest.mark.parametrize("text, rate", [
    ("100/s", Rate(100, 1)), ("5/10m", Rate(5, 600)), ("1000/1h", Rate(1000, 3600)),
    ("20/d", Rate(20, 86400)), (" 7 / 30s ", Rate(7, 30)),
])
def test_rates(text, rate):
    assert parse_rate(text) == rate


@pytest.mark.parametrize("rate, parts, share", [
    (Rate(10, 60), 2, Rate(5, 60)), (Rate(10, 60), 3, Rate(3, 60)), (Rate(5, 600), 10, Rate(1, 1200)),
    (Rate(3, 7), 2, Rate(1, 7)), (Rate(2, 7), 3, Rate(1, 11)), (Rate(7, 60), 1, Rate(7, 60)),
])
def test_a_rate_divided_among_gateways_never_adds_up_to_more(rate, parts, share):
    assert rate.share(parts) == share
    assert share.count * parts / share.period_s <= rate.count / rate.period_s


@pytest.mark.parametrize("text", ["", "5", "5/", "5/10", "5/ms", "0/s", "5/0m", "-1/s", "5/10x", "1/367d"])
def test_bad_rates(text):
    with pytest.raises(ValueError):
        parse_rate(text)


def test_settings_decode_units_and_defaults():
    s = settings(store="redis", redis={"url": "redis://127.0.0.1:6379/0", "timeout": "20ms"},
                 body_read_limit="16KiB", breaker={"open_time": "500ms"})
    assert s.redis.timeout == 0.02 and s.body_read_limit == 16384 and s.breaker.open_time == 0.5
    assert (s.on_redis_failure, s.headers, s.headers_on_allowed, s.local_capacity) == ("local", "draft", True, 65536)
    with pytest.raises(msgspec.ValidationError):
        settings(stores="local")


def test_settings_errors():
    assert field_error(settings(store="redis"), [])[0] == "ratelimit.redis"
    assert field_error(settings(store="redis", redis={}), [])[0] == "ratelimit.redis"
    assert field_error(settings(redis={"url": "http://x"}), [])[0] == "ratelimit.redis.url"
    assert field_error(settings(redis={"cluster_nodes": ["a:1", "b"]}), [])[0] == "ratelimit.redis.cluster_nodes[1]"
    assert field_error(settings(redis={"sentinel_nodes": ["a:1"]}), [])[0] == "ratelimit.redis.sentinel_service"
    assert field_error(settings(redis={"url": "redis://x", "timeout": 0}), [])[0] == "ratelimit.redis.timeout"
    assert field_error(settings(redis={"url": "redis://x", "key_prefix": "a{b"}), [])[0] == "ratelimit.redis.key_prefix"
    assert field_error(settings(local_capacity=10), [])[0] == "ratelimit.local_capacity"
    assert field_error(settings(ipv6_prefix_bits=129), [])[0] == "ratelimit.ipv6_prefix_bits"
    assert field_error(settings(instances=0), [])[0] == "ratelimit.instances"
    assert field_error(settings(instances="auto"), []) == (
        "ratelimit.instances", '"auto" learns the count through Redis: it needs store = "redis"')
    assert field_error(settings(registration_ttl="0s"), [])[0] == "ratelimit.registration_ttl"
    assert field_error(settings(hot_keys={"share": 1.5}), [])[0] == "ratelimit.hot_keys.share"
    assert field_error(settings(hot_keys={"window": "100ms"}), [])[0] == "ratelimit.hot_keys.window"
    assert field_error(settings(hot_keys={"min_calls": 0}), [])[0] == "ratelimit.hot_keys.min_calls"
    with pytest.raises(msgspec.ValidationError):
        settings(instances="all")
    assert field_error(settings(ipv6_prefix_bits=8), [])[0] == "ratelimit.ipv6_prefix_bits"
    assert field_error(settings(breaker={"open_time": "2s", "max_open_time": "1s"}), [])[0] == \
        "ratelimit.breaker.max_open_time"


def test_limit_errors_name_the_route_and_field():
    ok = Limit(key=["ip"], rate="5/m")
    cases = [
        (Limit(key=["ip"], rate="5 per minute"), "routes[1].limits[0].rate"),
        (Limit(key=["cookie:sid"], rate="5/m"), "routes[1].limits[0].key"),
        (Limit(key=[], rate="5/m"), "routes[1].limits[0].key"),
        (Limit(key=["ip", "ip"], rate="5/m"), "routes[1].limits[0].key"),
        (Limit(key=["ip"], rate="5/m", burst=2, algorithm="fixed_window"), "routes[1].limits[0].burst"),
        (Limit(key=["ip"], rate="1/366d", burst=10**9), "routes[1].limits[0].burst"),
        (Limit(key=["ip"], rate="5/m", fallback_rate="x"), "routes[1].limits[0].fallback_rate"),
        (Limit(key=["ip"], rate="5/m", scope="a b"), "routes[1].limits[0].scope"),
        (Limit(key=["ip"], rate="5/m", scope="caf\u00e9"), "routes[1].limits[0].scope"),
    ]
    for limit, path in cases:
        assert field_error(settings(), [("a", [ok]), ("b", [limit])])[0] == path


def test_scopes_within_and_across_routes():
    same_scope = [Limit(key=["ip"], rate="5/m", scope="s"), Limit(key=["ip"], rate="50/h", scope="s")]
    assert field_error(settings(), [("a", same_scope)])[0] == "routes[0].limits[1].scope"
    two_ip = [Limit(key=["ip"], rate="5/m"), Limit(key=["ip"], rate="50/h")]
    assert field_error(settings(), [("a", two_ip)])[0] == "routes[0].limits[1].scope"
    shared = Limit(key=["ip"], rate="5/m", scope="shared")
    validate(settings(), [("a", [shared]), ("b", [shared, Limit(key=["body.phone"], rate="1/m")])])
    field, reason = field_error(settings(), [("a", [shared]), ("b", [Limit(key=["ip"], rate="6/m", scope="shared")])])
    assert field == "routes[1].limits[0].scope" and "'a'" in reason
    field, _ = field_error(settings(), [("routes[0] {x}", [Limit(key=["ip"], rate="5/m")])])
    assert field == "routes[0].limits[0]"  # a default scope from an unusable route name
