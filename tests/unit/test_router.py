"""Route precedence: the most specific route wins, as documented in routing/router.py."""

from fastgate.config.schema import Http, Route as RouteConfig, Respond
from fastgate.ratelimit import RateLimiter, RateLimitSettings
from fastgate.config.load import compile_routes


def router(*routes: dict):
    configs = [RouteConfig(name=f"r{i}", respond=Respond(), **r) for i, r in enumerate(routes)]
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
