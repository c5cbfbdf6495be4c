"""Route precedence (the most specific route wins, as documented in routing/router.py) and the
conditions on headers, query parameters and cookies (routing/match.py)."""

import msgspec
import pytest

from fastgate.config.errors import ConfigError
from fastgate.config.load import compile_routes, load_config
from fastgate.config.schema import Http, Route as RouteConfig
from fastgate.ratelimit import RateLimiter, RateLimitSettings
from fastgate.wire.h1 import new_request_parser, parse_request_head
from fastgate.wire.params import cookie_value, query_value


def router(*routes: dict):
    """Routes named r0, r1, ... (each answers itself), decoded from config dicts as a config file is."""
    configs = [msgspec.convert({"name": f"r{i}", "respond": {}, **r}, RouteConfig) for i, r in enumerate(routes)]
    return compile_routes(configs, {}, Http(), RateLimiter.create_shared(RateLimitSettings()))


def name(r, host=b"x", path=b"/", method=b"GET"):
    route = r.match(host, path, method)
    return route.name if route else None


def test_exact_beats_regex_beats_longest_prefix():
    r = router({"path_prefix": "/"}, {"path_prefix": "/api/"}, {"path_regex": "^/api/v[0-9]+/"}, {"path": "/api/v1/x"})
    assert name(r, path=b"/api/v1/x") == "r3"
    assert name(r, path=b"/api/v1/y") == "r2"
    assert name(r, path=b"/api/other") == "r1"
    assert name(r, path=b"/else") == "r0"


def test_exact_host_beats_wildcard_beats_any_and_falls_through():
    r = router({"path_prefix": "/"}, {"hosts": ["*.example.com"]}, {"hosts": ["api.example.com"], "path_prefix": "/v1/"})
    assert name(r, host=b"api.example.com:8080", path=b"/v1/a") == "r2"
    assert name(r, host=b"API.example.com", path=b"/other") == "r1"  # exact host, path misses: falls through
    assert name(r, host=b"www.example.com") == "r1"
    assert name(r, host=b"example.com") == "r0"  # "*.example.com" needs a subdomain


def test_methods_beat_no_methods_and_ties_go_to_the_first():
    r = router({"path_prefix": "/a"}, {"path_prefix": "/a", "methods": ["POST"]}, {"path_prefix": "/a"})
    assert name(r, path=b"/a", method=b"POST") == "r1"
    assert name(r, path=b"/a", method=b"GET") == "r0"


def test_no_match():
    r = router({"path": "/only"})
    assert name(r, path=b"/other") is None


def test_prefix_rewrite():
    r = router({"path_prefix": "/api/", "prefix_rewrite": "/"}, {"path_prefix": "/v1", "prefix_rewrite": "/v2"})
    assert r.match(b"x", b"/api/users", b"GET").upstream_target(b"/api/users?q=1") == b"/users?q=1"
    assert r.match(b"x", b"/v1/a", b"GET").upstream_target(b"/v1/a") == b"/v2/a"


# -- conditions on headers, query parameters and cookies (routing/match.py) ------------------------

def request(target: bytes = b"/", *headers: bytes, method: bytes = b"GET"):
    """An HTTP/1.1 request head, parsed as the server parses it: the router's ``request``."""
    raw = method + b" " + target + b" HTTP/1.1\r\nHost: x" + b"".join(b"\r\n" + h for h in headers) + b"\r\n\r\n"
    return parse_request_head(raw, 8192, 100, new_request_parser())


def picked(r, head, host=b"x"):
    route = r.match(host, head.path, head.method, head)
    return route.name if route else None


def test_header_conditions_exact_prefix_regex_present_absent():
    r = router(
        {"path_prefix": "/"},
        {"path_prefix": "/", "match_headers": [{"name": "X-Api-Version", "exact": "2"}]},
        {"path_prefix": "/", "match_headers": [{"name": "Content-Type", "prefix": "application/grpc"}]},
        {"path_prefix": "/", "match_headers": [{"name": "X-Tenant", "regex": "^t[0-9]+$"}]},
        {"path_prefix": "/", "match_headers": [{"name": "X-Debug", "present": True}]},
        {"path_prefix": "/a/", "match_headers": [{"name": "X-Debug", "present": False}]},
    )
    assert picked(r, request(b"/", b"X-Api-Version: 2")) == "r1"
    assert picked(r, request(b"/", b"X-Api-Version: 20")) == "r0"  # exact is exact
    assert picked(r, request(b"/", b"X-Api-Version:  2  ")) == "r1"  # surrounding blanks are not the value
    assert picked(r, request(b"/", b"Content-Type: application/grpc+proto")) == "r2"
    assert picked(r, request(b"/", b"Content-Type: application/json")) == "r0"
    assert picked(r, request(b"/", b"X-Tenant: t42")) == "r3"
    assert picked(r, request(b"/", b"X-Tenant: t42x")) == "r0"
    assert picked(r, request(b"/", b"X-Tenant: xt42")) == "r0"  # matched from the start, like path_regex
    assert picked(r, request(b"/", b"X-Debug: ")) == "r4"  # present, even empty
    assert picked(r, request(b"/a/x")) == "r5"  # absent
    assert picked(r, request(b"/a/x", b"X-Debug: 0")) == "r4"  # present: the absent route cannot match
    assert picked(r, request(b"/")) == "r0"


def test_header_names_are_case_insensitive_values_are_not():
    r = router({"path_prefix": "/"}, {"path_prefix": "/", "match_headers": [{"name": "X-Api-Version", "exact": "v2"}]})
    assert picked(r, request(b"/", b"x-API-version: v2")) == "r1"
    assert picked(r, request(b"/", b"X-API-VERSION: v2")) == "r1"
    assert picked(r, request(b"/", b"X-Api-Version: V2")) == "r0"


def test_a_header_sent_several_times_is_matched_on_its_joined_values():
    r = router({"path_prefix": "/"}, {"path_prefix": "/", "match_headers": [{"name": "X-V", "exact": "2"}]},
               {"path_prefix": "/", "match_headers": [{"name": "X-W", "exact": "1, 2"}]})
    assert picked(r, request(b"/", b"X-V: 2", b"X-V: 1")) == "r0"  # "2, 1", not "2"
    assert picked(r, request(b"/", b"X-W: 1", b"x-w: 2")) == "r2"


def test_query_conditions_first_occurrence_percent_and_plus_decoded():
    r = router(
        {"path_prefix": "/"},
        {"path_prefix": "/", "match_query": [{"name": "beta", "present": True}]},
        {"path_prefix": "/q", "match_query": [{"name": "v", "exact": "a b/é"}]},
        {"path_prefix": "/n", "match_query": [{"name": "the key", "prefix": "x"}]},
        {"path_prefix": "/off", "match_query": [{"name": "beta", "present": False}]},
    )
    assert picked(r, request(b"/?beta")) == "r1"
    assert picked(r, request(b"/?beta=")) == "r1"
    assert picked(r, request(b"/?a=1&beta=0")) == "r1"
    assert picked(r, request(b"/?alpha=1&betamax=2")) == "r0"  # names match whole
    assert picked(r, request(b"/?Beta=1")) == "r0"  # names are case-sensitive
    assert picked(r, request(b"/?bet%61=1")) == "r1"  # the name is decoded too
    assert picked(r, request(b"/q?v=a+b%2F%C3%A9")) == "r2"
    assert picked(r, request(b"/q?v=a%20b/%c3%a9")) == "r2"
    assert picked(r, request(b"/q?v=zzz&v=a+b/%C3%A9")) == "r0"  # the first occurrence counts
    assert picked(r, request(b"/n?the+key=xy")) == "r3"
    assert picked(r, request(b"/off")) == "r4"
    assert picked(r, request(b"/off?")) == "r4"
    assert picked(r, request(b"/off?beta=1")) == "r1"


def test_cookie_conditions_across_several_cookie_headers():
    r = router(
        {"path_prefix": "/"},
        {"path_prefix": "/", "match_cookies": [{"name": "canary", "regex": "^(1|yes)$"}]},
        {"path_prefix": "/s", "match_cookies": [{"name": "session", "present": False}]},
    )
    assert picked(r, request(b"/", b"Cookie: canary=1")) == "r1"
    assert picked(r, request(b"/", b"Cookie: a=b; canary=yes; c=d")) == "r1"
    assert picked(r, request(b"/", b"Cookie: a=b", b"Cookie: canary=1")) == "r1"  # a second Cookie field
    assert picked(r, request(b"/", b"cookie: canary=\"yes\"")) == "r1"  # quotes are not the value
    assert picked(r, request(b"/", b"Cookie: canary=2; canary=1")) == "r0"  # the first one counts
    assert picked(r, request(b"/", b"Cookie: Canary=1")) == "r0"  # names are case-sensitive
    assert picked(r, request(b"/", b"Cookie: xcanary=1; canaryx=1")) == "r0"
    assert picked(r, request(b"/", b"X-Cookie: canary=1")) == "r0"
    assert picked(r, request(b"/s", b"Cookie: a=1")) == "r2"
    assert picked(r, request(b"/s", b"Cookie: a=1", b"Cookie: session=x")) == "r0"


def test_all_conditions_of_a_route_must_hold():
    r = router({"path_prefix": "/"}, {
        "path_prefix": "/", "match_headers": [{"name": "X-A", "exact": "1"}],
        "match_query": [{"name": "b", "exact": "2"}], "match_cookies": [{"name": "c", "exact": "3"}],
    })
    assert picked(r, request(b"/?b=2", b"X-A: 1", b"Cookie: c=3")) == "r1"
    assert picked(r, request(b"/?b=2", b"X-A: 1")) == "r0"
    assert picked(r, request(b"/", b"X-A: 1", b"Cookie: c=3")) == "r0"
    assert picked(r, request(b"/?b=2", b"Cookie: c=3")) == "r0"


def test_precedence_with_conditions():
    r = router(
        {"path_prefix": "/api/", "match_headers": [{"name": "X-A", "present": True}],
         "match_cookies": [{"name": "c", "present": True}]},                               # r0: prefix, 2 conditions
        {"path_prefix": "/api/v1/"},                                                          # r1: longer prefix
        {"path_prefix": "/api/", "match_headers": [{"name": "X-A", "present": True}]},     # r2: 1 condition
        {"path_prefix": "/api/", "methods": ["GET"]},                                        # r3: methods only
        {"path_prefix": "/api/", "methods": ["GET"], "match_query": [{"name": "q", "present": True}]},  # r4
        {"path_regex": "^/api/", "match_headers": [{"name": "X-R", "present": True}]},     # r5: regex beats prefix
        {"hosts": ["h.test"], "path_prefix": "/"},                                           # r6: host beats all
        {"path_prefix": "/api/", "match_query": [{"name": "q", "present": True}]},         # r7: as r4, no methods
    )
    assert picked(r, request(b"/api/x", b"X-A: 1", b"Cookie: c=1")) == "r0"  # more conditions beat fewer
    assert picked(r, request(b"/api/x", b"X-A: 1")) == "r2"
    assert picked(r, request(b"/api/x?q", b"X-A: 1")) == "r4"  # one condition each: the one with methods
    assert picked(r, request(b"/api/x?q", b"X-A: 1", method=b"POST")) == "r2"  # then the first listed (r2, r7)
    assert picked(r, request(b"/api/v1/x", b"X-A: 1", b"Cookie: c=1")) == "r1"  # a longer prefix beats conditions
    assert picked(r, request(b"/api/x?q")) == "r4"  # a condition and methods beat methods alone
    assert picked(r, request(b"/api/x?q", method=b"POST")) == "r7"
    assert picked(r, request(b"/api/x")) == "r3"  # conditions unmet: the route with methods
    assert picked(r, request(b"/api/x", method=b"POST")) is None
    assert picked(r, request(b"/api/x", b"X-R: 1", b"X-A: 1", b"Cookie: c=1")) == "r5"
    assert picked(r, request(b"/api/x", b"X-A: 1", b"Cookie: c=1"), host=b"h.test") == "r6"


def test_conditions_rank_before_methods_and_ties_go_to_the_first():
    r = router(
        {"path_prefix": "/", "methods": ["GET"]},
        {"path_prefix": "/", "match_headers": [{"name": "X-A", "present": True}]},
        {"path_prefix": "/", "match_headers": [{"name": "X-B", "present": True}]},
    )
    assert picked(r, request(b"/", b"X-A: 1")) == "r1"  # a condition beats methods
    assert picked(r, request(b"/", b"X-A: 1", b"X-B: 1")) == "r1"  # one each: listed first
    assert picked(r, request(b"/", b"X-B: 1")) == "r2"
    assert picked(r, request(b"/")) == "r0"


def test_unmet_conditions_fall_through_to_less_specific_hosts():
    r = router({"hosts": ["a.test"], "match_headers": [{"name": "X-A", "exact": "1"}]}, {"hosts": ["*.test"]}, {})
    assert picked(r, request(b"/", b"X-A: 1"), host=b"a.test") == "r0"
    assert picked(r, request(b"/", b"X-A: 2"), host=b"a.test") == "r1"
    assert picked(r, request(b"/"), host=b"other") == "r2"


def test_without_a_request_a_route_with_conditions_never_matches():
    r = router({"path_prefix": "/"}, {"path_prefix": "/", "match_headers": [{"name": "X-Debug", "present": False}]})
    assert name(r, path=b"/") == "r0"  # match(host, path, method): no request to read
    assert r.match(b"x", b"/", b"GET", None).name == "r0"
    assert router({"match_query": [{"name": "a", "present": False}]}).match(b"x", b"/", b"GET") is None


class Recording:
    """A request of no particular protocol that records what the router asks of it."""

    def __init__(self, headers=None, query=b"", cookies=None) -> None:
        self.headers, self.query, self.cookies = headers or {}, query, cookies or {}
        self.asked: list[tuple[str, bytes]] = []

    def header(self, name: bytes):
        self.asked.append(("header", name))
        return self.headers.get(name)

    def cookie(self, name: bytes):
        self.asked.append(("cookie", name))
        return self.cookies.get(name)


class Untouchable:
    """A request that must not be read at all."""

    def __getattr__(self, name):
        raise AssertionError(f"the router read request.{name}")


def test_a_table_without_conditions_never_reads_the_request():
    r = router({"path_prefix": "/"}, {"path": "/a", "methods": ["POST"]}, {"hosts": ["h.test"], "path": "/h"})
    assert r.match(b"x", b"/a", b"POST", Untouchable()).name == "r1"
    assert r.match(b"h.test", b"/b", b"GET", Untouchable()).name == "r0"


def test_values_are_read_lazily_only_for_candidate_routes():
    r = router(
        {"path_prefix": "/"},
        {"path_prefix": "/other/", "match_headers": [{"name": "X-Other", "present": True}]},
        {"path_prefix": "/", "methods": ["PUT"], "match_cookies": [{"name": "put", "present": True}]},
        {"path_prefix": "/api/", "match_headers": [{"name": "X-A", "exact": "1"}, {"name": "X-B", "exact": "2"}],
         "match_cookies": [{"name": "c", "present": True}]},
        {"path_prefix": "/api/", "match_query": [{"name": "v", "exact": "2"}]},
    )
    req = Recording(headers={b"x-a": b"0"}, query=b"?v=2")
    assert r.match(b"x", b"/api/x", b"GET", req).name == "r4"
    assert req.asked == [("header", b"x-a")]  # stops at the first unmet condition; the query is no call
    req = Recording(headers={b"x-a": b"1", b"x-b": b"2"}, cookies={b"c": b""})
    assert r.match(b"x", b"/api/x", b"GET", req).name == "r3"
    assert req.asked == [("header", b"x-a"), ("header", b"x-b"), ("cookie", b"c")]
    req = Recording()
    assert r.match(b"x", b"/plain", b"GET", req).name == "r0"
    assert req.asked == []  # no candidate route had conditions


def test_request_head_reads_headers_and_cookies():
    head = request(b"/p?x=1", b"X-Multi: a ", b"Cookie: k=v; q=\"w\"", b"x-multi: b", b"Cookie: k=other; z=1")
    assert head.header(b"x-multi") == b"a, b"
    assert head.header(b"host") == b"x"
    assert head.header(b"x-missing") is None
    assert head.header(b"cookie") == b"k=v; q=\"w\", k=other; z=1"
    assert (head.cookie(b"k"), head.cookie(b"q"), head.cookie(b"z"), head.cookie(b"K")) == (b"v", b"w", b"1", None)
    assert head.query == b"?x=1"


def test_query_and_cookie_parsers():
    assert query_value(b"a=1&b=%41+B&c", b"b") == b"A B"
    assert query_value(b"a=1&b=2", b"c") is None
    assert query_value(b"c&c=1", b"c") == b""
    assert query_value(b"%zz=1&x=%zz", b"x") == b"%zz"  # a malformed escape is kept
    assert cookie_value([b"a=1;b=2", b" b = 3 "], b"b") == b"2"
    assert cookie_value([b"flag; b=3"], b"flag") is None  # a pair without "=" names no cookie
    assert cookie_value([b"b=\"\""], b"b") == b""
    assert cookie_value([b"b=x=y"], b"b") == b"x=y"
    assert cookie_value([], b"b") is None


ROUTE_BASE = '[[listeners]]\naddress = "127.0.0.1:8080"\n[[routes]]\nrespond = {status = 200}\n'


@pytest.mark.parametrize("matchers, field, reason", [
    ('match_headers = [{name = "X-A"}]', "routes[0].match_headers[0]",
     "needs exactly one of exact, prefix, regex and present"),
    ('match_query = [{name = "a", exact = "1", present = true}]', "routes[0].match_query[0]",
     "needs exactly one of exact, prefix, regex and present (got exact, present)"),
    ('match_cookies = [{name = "c", exact = "1"}, {name = "c", prefix = "1", regex = "1"}]',
     "routes[0].match_cookies[1]", "(got prefix, regex)"),
    ('match_headers = [{name = "", present = true}]', "routes[0].match_headers[0].name", "must not be empty"),
    ('match_query = [{name = "", present = true}]', "routes[0].match_query[0].name", "must not be empty"),
    ('match_headers = [{name = "X A", present = true}]', "routes[0].match_headers[0].name", "is not a header name"),
    ('match_cookies = [{name = "a;b", present = true}]', "routes[0].match_cookies[0].name", "is not a cookie name"),
    ('match_headers = [{name = "X-A", regex = "("}]', "routes[0].match_headers[0].regex",
     "not a valid regular expression"),
    ('match_headers = [{name = "X-A", exact = "a\\nb"}]', "routes[0].match_headers[0].exact", "CR, LF or NUL"),
    ('match_headers = [{name = "X-A", equals = "1"}]', "routes[0].match_headers[0]", "unknown field `equals`"),
    ('match_headers = [{name = "X-A", present = "yes"}]', "routes[0].match_headers[0].present", "Expected `bool"),
    ('match_headers = [{exact = "1"}]', "routes[0].match_headers[0]", "missing required field `name`"),
    ('match_query = {name = "a", present = true}', "routes[0].match_query", "Expected `array`"),
])
def test_invalid_matchers_are_refused_with_field_and_reason(tmp_path, matchers, field, reason):
    path = tmp_path / "gate.conf"
    path.write_text(ROUTE_BASE + matchers + "\n")
    with pytest.raises(ConfigError) as info:
        load_config(str(path))
    assert info.value.field == field
    assert reason in info.value.reason


def test_valid_matchers_load(tmp_path):
    path = tmp_path / "gate.conf"
    path.write_text(ROUTE_BASE + 'path_prefix = "/api/"\n'
                    'match_headers = [{ name = "X-Api-Version", exact = "2" },'
                    ' { name = "Content-Type", prefix = "application/grpc" }, { name = "X-Debug", present = false }]\n'
                    'match_query = [{ name = "beta", present = true }]\n'
                    'match_cookies = [{ name = "canary", regex = "^(1|yes)$" }]\n')
    loaded = load_config(str(path))
    route = loaded.router.any_host[0]
    assert len(route.conditions) == 5
    assert picked(loaded.router, request(b"/api/x?beta", b"X-Api-Version: 2", b"Content-Type: application/grpc",
                                         b"Cookie: canary=yes")) == "routes[0]"
    assert picked(loaded.router, request(b"/api/x?beta", b"X-Api-Version: 2", b"Content-Type: application/grpc",
                                         b"Cookie: canary=yes", b"X-Debug: 1")) is None
