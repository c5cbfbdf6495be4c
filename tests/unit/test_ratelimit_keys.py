"""Key extraction (ip, header, query, JSON and form body fields, combinations) and key names."""

import pytest

from fastgate.ratelimit import UNPARSEABLE, Limit, RateLimiter, RateLimitSettings, RedisSettings, body_field
from fastgate.ratelimit.keys import IpGrouping, digest, joined, parse_source, query_value

JSON = b"application/json"
FORM = b"application/x-www-form-urlencoded; charset=utf-8"
NO_HEADERS = {}.get


def headers(**values):
    table = {k.replace("_", "-").encode(): v.encode() for k, v in values.items()}
    return table.get


@pytest.fixture(scope="module")
def limiter():
    """Key names are Redis key names with the Redis store (compiling needs no server)."""
    return RateLimiter.create_shared(RateLimitSettings(local_capacity=64, store="redis",
                                                       redis=RedisSettings(url="redis://127.0.0.1:1")))


def test_json_fields_nested_indexed_and_non_string():
    body = b'{"phone": "+15551234", "user": {"id": 42, "tags": ["a", "b"], "vip": true}, "none": null}'
    assert body_field(body, JSON, "phone") == b"+15551234"
    assert body_field(body, JSON, "user.id") == b"42"
    assert body_field(body, JSON, "user.tags.1") == b"b"
    assert body_field(body, JSON, "user.vip") == b"true"
    assert body_field(b'{"phone": "1", "phone": "2"}', JSON, "phone") == b"2"
    assert body_field(body, b"text/plain", "phone") == b"+15551234"  # not a form: read as JSON
    for absent in ("missing", "user.tags.7", "phone.x", "none"):
        assert body_field(body, JSON, absent) is None


def test_form_fields_decoded_first_occurrence_wins():
    body = b"phone=%2B1+555&phone=other&user%5Bid%5D=7&empty="
    assert body_field(body, FORM, "phone") == b"+1 555"
    assert body_field(body, FORM, "user[id]") == b"7"
    assert body_field(body, FORM, "empty") == b""
    assert body_field(body, FORM, "missing") is None


def test_unreadable_bodies_share_one_value_and_no_body_means_absent():
    assert body_field(b'{"phone": "+1555', JSON, "phone") == UNPARSEABLE  # not valid JSON
    assert body_field(b"phone=%2B1555&x=", FORM, "phone", truncated=True) == UNPARSEABLE
    assert body_field(b"--x\r\n", b"multipart/form-data; boundary=x", "phone") == UNPARSEABLE
    assert body_field(b"", JSON, "phone") is None
    assert body_field(None, None, "phone") is None


def test_query_values():
    query = b"a=1&phone=%2B1+555&phone=2&flag&b%61d=x"
    assert query_value(query, b"phone") == b"+1 555"
    assert query_value(query, b"flag") == b""
    assert query_value(query, b"bad") == b"x"
    assert query_value(query, b"missing") is None


def test_source_syntax():
    assert parse_source("header:X-API-Key").name == b"x-api-key"
    assert parse_source("body.user.phone").path == ("user", "phone")
    for bad in ("ipv4", "header:", "header:a b", "query:a=b", "body.", "body.a..b", "cookie:x"):
        with pytest.raises(ValueError):
            parse_source(bad)


def test_route_keys_combine_sources_and_skip_limits_whose_source_is_absent(limiter):
    route = limiter.compile_route("keys-combo", [
        Limit(key=["header:X-API-Key", "query:tenant"], rate="10/s", scope="combo"),
        Limit(key=["ip"], rate="10/s", scope="combo-ip"),
    ])
    assert not route.needs_body
    keys = route.keys(b"203.0.113.9", headers(x_api_key="  k1 "), b"tenant=t1", None, None)
    assert keys[0].endswith(digest([b"k1", b"t1"]))
    assert keys[1].endswith(digest([b"203.0.113.9"]))
    assert digest([b"k1", b"t1"]) != digest([b"k1t", b"1"])  # parts are length-prefixed
    keys = route.keys(b"203.0.113.9", headers(), b"tenant=t1", None, None)
    assert keys[0] == b"" and keys[1]
    ip_only = limiter.compile_route("keys-ip-only", [Limit(key=["header:X-API-Key"], rate="1/s", scope="k")])
    assert ip_only.keys(b"203.0.113.9", headers(), b"", None, None) is None


def test_a_body_at_the_read_limit_counts_as_cut_off():
    limiter = RateLimiter.create_shared(RateLimitSettings(local_capacity=64, body_read_limit=32))
    route = limiter.compile_route("cut", [Limit(key=["body.phone"], rate="1/s")])
    assert route.needs_body and route.body_read_limit == 32
    padded = b"pad=" + b"x" * 20 + b"&phone=1555"  # 35 bytes: the gateway passes the first 32
    cut = route.keys(b"192.0.2.1", headers(), b"", padded[:32], FORM)
    assert cut == route.keys(b"192.0.2.1", headers(), b"", b'{"broken', JSON)  # the shared unreadable budget
    assert route.keys(b"192.0.2.1", headers(), b"", padded[:24], FORM) is None  # complete, without a phone


def test_key_names_and_hash_tags(limiter):
    """Same-source scopes use the key value as hash tag; scopes checked with other sources share one tag,
    and a scope keeps one name whichever route reaches it."""
    api = limiter.compile_route("api", [Limit(key=["ip"], rate="10/s"), Limit(key=["ip"], rate="1000/h",
                                                                             scope="api-hourly")])
    keys = api.keys(b"198.51.100.1", headers(), b"", None, None)
    d = digest([b"198.51.100.1"])
    assert keys == [b"fg:rl:api.ip:g:{%s}" % d, b"fg:rl:api-hourly:g:{%s}" % d]
    login = limiter.compile_route("login", [Limit(key=["ip"], rate="5/m", algorithm="fixed_window",
                                                  scope="shared-ip")])
    otp = limiter.compile_route("otp", [Limit(key=["body.phone"], rate="3/10m", scope="otp-phone"),
                                        Limit(key=["ip"], rate="5/m", algorithm="fixed_window", scope="shared-ip")])
    assert otp.needs_body
    otp_keys = otp.keys(b"198.51.100.1", headers(), b"", b'{"phone": "+1555"}', JSON)
    tag = otp_keys[0][otp_keys[0].index(b"{"):otp_keys[0].index(b"}") + 1]
    assert otp_keys == [b"fg:rl:otp-phone:g:%s:%s" % (tag, digest([b"+1555"])),
                        b"fg:rl:shared-ip:f:%s:%s" % (tag, d)]
    assert login.keys(b"198.51.100.1", headers(), b"", None, None) == [otp_keys[1]]


def test_local_store_keys_are_plain_and_tell_scopes_and_combinations_apart():
    """The local store hashes keys itself: no digest, the values follow the scope's prefix."""
    local = RateLimiter.create_shared(RateLimitSettings(local_capacity=64))
    api = local.compile_route("api", [Limit(key=["ip"], rate="10/s")])
    assert api.keys(b"198.51.100.1", headers(), b"", None, None) == [b"fg:rl:api:g:{198.51.100.1"]
    combo = local.compile_route("combo", [Limit(key=["header:X-API-Key", "query:tenant"], rate="1/s"),
                                          Limit(key=["ip"], rate="5/s")])
    keys = combo.keys(b"198.51.100.1", headers(x_api_key="k1"), b"tenant=t1", None, None)
    tag = keys[0][keys[0].index(b"{"):keys[0].index(b"}") + 1]
    assert keys == [b"fg:rl:combo.header:X-API-Key+query:tenant:g:%s:%s" % (tag, joined([b"k1", b"t1"])),
                    b"fg:rl:combo.ip:g:%s:198.51.100.1" % tag]
    assert joined([b"k1", b"t1"]) != joined([b"k1t", b"1"])  # parts are length-prefixed


@pytest.mark.parametrize("bits, ip, value", [
    (64, b"192.0.2.7", b"192.0.2.7"),
    (64, b"2001:db8:1:2:aaaa:bbbb:cccc:dddd", b"2001:db8:1:2::/64"),
    (64, b"2001:db8:1:2::1", b"2001:db8:1:2::/64"),
    (64, b"::1", b"::/64"),
    (56, b"2001:db8:1:2ff::9", b"2001:db8:1:200::/56"),
    (48, b"2001:DB8:1:2::9", b"2001:db8:1::/48"),
    (128, b"2001:db8:1:2::1", b"2001:db8:1:2::1"),
    (64, b"::ffff:192.0.2.7", b"192.0.2.7"),  # IPv4-mapped: the IPv4 client it is
    (64, b"fe80::1%eth0", b"fe80::/64"),
    (64, b"zz::1", b"zz::1"),  # not an address: kept as it is
])
def test_ipv6_clients_count_by_their_network(bits, ip, value):
    assert IpGrouping(bits).group(ip) == value


def test_ip_keys_of_one_ipv6_network_share_a_budget():
    limiter = RateLimiter.create_shared(RateLimitSettings(local_capacity=64, headers_on_allowed=False))
    route = limiter.compile_route("v6", [Limit(key=["ip"], rate="2/m")])
    both = [limiter.compile_route("v6-both", [Limit(key=["ip", "header:X-Device"], rate="2/m")])]
    statuses = [route.check_now(route.keys(b"2001:db8:7:7::%x" % n, NO_HEADERS, b"", None, None)).status
                for n in range(1, 4)]
    assert statuses == [200, 200, 429]  # three addresses, one /64, one budget of 2
    assert route.check_now(route.keys(b"2001:db8:7:8::1", NO_HEADERS, b"", None, None)).status == 200
    assert route.admit_ip is not None and not route.admit_ip(b"2001:db8:7:7::9")  # never counted by plain address
    device = headers(x_device="d1")
    assert both[0].keys(b"2001:db8:7:7::1", device, b"", None, None) == \
        both[0].keys(b"2001:db8:7:7::2", device, b"", None, None)


def test_ipv6_grouping_can_be_turned_off():
    limiter = RateLimiter.create_shared(RateLimitSettings(local_capacity=64, ipv6_prefix_bits=128))
    route = limiter.compile_route("v6-apart", [Limit(key=["ip"], rate="1/m")])
    assert route.keys(b"2001:db8::1", NO_HEADERS, b"", None, None) != route.keys(b"2001:db8::2", NO_HEADERS, b"",
                                                                                 None, None)
