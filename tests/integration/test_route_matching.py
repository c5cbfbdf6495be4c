"""Routes picked by request headers, query parameters and cookies (match_headers, match_query,
match_cookies): each kind of condition, absence, all conditions together, and precedence.

Every route marks its answers with ``X-Route: <name>``; the proxied ones reach a real upstream,
which shows what it received.
"""

import httpx
import pytest

from tests.support.checks import assert_json_error


def _answer(name: str, **match) -> dict:
    return {"name": name, **match, "respond": {"status": 200, "body": name},
            "response_headers": {"set": {"X-Route": name}}}


def _proxy(name: str, **match) -> dict:
    return {"name": name, **match, "upstream": "up", "response_headers": {"set": {"X-Route": name}}}


ROUTES = [
    _proxy("default", path_prefix="/"),
    # a header: an API version picks the v2 upstream route, rewritten to /v2/
    _proxy("v2", path_prefix="/api/", prefix_rewrite="/v2/",
           match_headers=[{"name": "X-Api-Version", "exact": "2"}]),
    # a header prefix: gRPC, whatever its subtype
    _answer("grpc", path_prefix="/", match_headers=[{"name": "Content-Type", "prefix": "application/grpc"}]),
    # a query parameter, present with any value
    _answer("beta", path_prefix="/api/", match_query=[{"name": "beta", "present": True}]),
    # a query parameter's decoded value
    _answer("lang-fr", path="/search", match_query=[{"name": "lang", "exact": "fr CA"}]),
    # a cookie, by regex
    _proxy("canary", path_prefix="/api/", match_cookies=[{"name": "canary", "regex": "^(1|yes)$"}]),
    # two conditions beat one
    _answer("v2-canary", path_prefix="/api/", match_headers=[{"name": "X-Api-Version", "exact": "2"}],
            match_cookies=[{"name": "canary", "present": True}]),
    # absence: without a token /internal/ is answered here; with one it goes to the upstream
    _proxy("internal", path_prefix="/internal/"),
    {"name": "internal-no-token", "path_prefix": "/internal/",
     "match_headers": [{"name": "X-Internal-Token", "present": False}],
     "respond": {"status": 403, "body": "token required"},
     "response_headers": {"set": {"X-Route": "internal-no-token"}}},
    # a condition on a route of its own path only: elsewhere the path decides
    _answer("only-here", path="/only-here", match_headers=[{"name": "X-Key", "exact": "k"}]),
]


@pytest.fixture(scope="module")
def gw(module_gateways, module_upstream):
    return module_gateways.start({"upstreams": [module_upstream.config("up")], "routes": ROUTES})


def get(gw, path: str, headers=None) -> httpx.Response:
    return httpx.get(gw.url(path), headers=headers, timeout=10)


def test_a_header_picks_a_route_and_the_request_reaches_its_upstream(gw, module_upstream):
    response = get(gw, "/api/users?id=hdr-1", {"X-Api-Version": "2"})
    assert response.status_code == 200, response.text
    assert response.headers["x-route"] == "v2"
    received = module_upstream.wait_request("id=hdr-1")
    assert received.target == "/v2/users?id=hdr-1"  # the v2 route's rewrite
    assert received.header("X-Api-Version") == "2"  # the header that decided goes on unchanged

    assert get(gw, "/api/users", {"x-api-version": "2"}).headers["x-route"] == "v2"  # any case of the name
    assert get(gw, "/api/users", {"X-Api-Version": "3"}).headers["x-route"] == "default"
    assert get(gw, "/api/users").headers["x-route"] == "default"


def test_a_header_prefix_picks_the_grpc_route(gw):
    for content_type in ("application/grpc", "application/grpc+proto"):
        response = httpx.post(gw.url("/pkg.Service/Call"), content=b"\0\0\0\0\0",
                              headers={"Content-Type": content_type}, timeout=10)
        assert (response.status_code, response.text, response.headers["x-route"]) == (200, "grpc", "grpc")
    response = httpx.post(gw.url("/pkg.Service/Call"), content=b"{}", headers={"Content-Type": "application/json"},
                          timeout=10)
    assert response.headers["x-route"] == "default"


def test_a_query_parameter_picks_a_route(gw):
    for query in ("?beta", "?beta=", "?x=1&beta=0", "?bet%61=1"):
        response = get(gw, "/api/items" + query)
        assert (response.status_code, response.text) == (200, "beta"), query
    assert get(gw, "/api/items?betamax=1").headers["x-route"] == "default"
    assert get(gw, "/api/items?Beta=1").headers["x-route"] == "default"


def test_a_query_parameter_is_percent_decoded_and_the_first_counts(gw):
    for query in ("?lang=fr+CA", "?lang=fr%20CA", "?q=x&lang=fr%20%43A"):
        assert get(gw, "/search" + query).text == "lang-fr", query
    assert get(gw, "/search?lang=de&lang=fr+CA").headers["x-route"] == "default"


def test_a_cookie_picks_a_route(gw, module_upstream):
    with httpx.Client(cookies={"canary": "yes"}, timeout=10) as client:  # httpx's own cookie jar
        response = client.get(gw.url("/api/orders?id=cookie-1"))
    assert response.headers["x-route"] == "canary"
    assert module_upstream.wait_request("id=cookie-1").header("Cookie") == "canary=yes"
    # among other cookies, and in a second Cookie header (as HTTP/2 clients send them)
    assert get(gw, "/api/orders", {"Cookie": "session=abc; canary=1; theme=dark"}).headers["x-route"] == "canary"
    assert get(gw, "/api/orders", [("Cookie", "session=abc"), ("Cookie", "canary=1")]).headers["x-route"] == "canary"
    assert get(gw, "/api/orders", {"Cookie": "canary=no"}).headers["x-route"] == "default"
    assert get(gw, "/api/orders", {"Cookie": "notcanary=1"}).headers["x-route"] == "default"


def test_absence_matches(gw, module_upstream):
    response = get(gw, "/internal/stats")
    assert (response.status_code, response.text, response.headers["x-route"]) == (403, "token required",
                                                                                  "internal-no-token")
    response = get(gw, "/internal/stats?id=absent-1", {"X-Internal-Token": "t"})
    assert (response.status_code, response.headers["x-route"]) == (200, "internal")
    assert module_upstream.wait_request("id=absent-1").header("X-Internal-Token") == "t"
    assert get(gw, "/internal/stats", {"X-Internal-Token": ""}).headers["x-route"] == "internal"  # empty is present


def test_the_route_with_more_conditions_wins(gw):
    both = get(gw, "/api/x", {"X-Api-Version": "2", "Cookie": "canary=1"})
    assert (both.text, both.headers["x-route"]) == ("v2-canary", "v2-canary")
    # one condition each (v2, beta, canary): the route listed first
    assert get(gw, "/api/x?beta", {"Cookie": "canary=1"}).headers["x-route"] == "beta"


def test_conditions_do_not_widen_a_path(gw):
    assert get(gw, "/only-here", {"X-Key": "k"}).text == "only-here"
    assert get(gw, "/only-here/not", {"X-Key": "k"}).headers["x-route"] == "default"
    assert get(gw, "/only-here", {"X-Key": "other"}).headers["x-route"] == "default"


def test_no_route_left_is_a_404(module_gateways):
    gw = module_gateways.start({"routes": [_answer("only-v2", path_prefix="/",
                                                   match_headers=[{"name": "X-Api-Version", "exact": "2"}])]})
    assert get(gw, "/x", {"X-Api-Version": "2"}).text == "only-v2"
    assert_json_error(get(gw, "/x"), 404)
