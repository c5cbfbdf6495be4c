"""Route selection: host (exact, wildcard, any), path (exact, regex, prefix), method; precedence; 404.

Every route answers its own name (``respond``), so the body says which route won.
"""

import httpx
import pytest

from tests.support.checks import assert_json_error


def _route(name: str, **match) -> dict:
    return {"name": name, **match, "respond": {"status": 200, "body": name}}


ROUTES = [
    # host specificity: exact > wildcard > any
    _route("wild", hosts=["*.wild.test"], path_prefix="/"),
    _route("exact-host", hosts=["exact.wild.test"], path_prefix="/"),
    _route("host-beats-path", hosts=["hostwins.test"], path_prefix="/"),
    # path specificity among routes for any host: exact > regex > longer prefix > shorter prefix
    _route("prefix-short", path_prefix="/p/"),
    _route("prefix-long", path_prefix="/p/long/"),
    _route("regex", path_regex="^/p/long/[0-9]+$"),
    _route("exact", path="/p/long/42"),
    _route("regex-beats-longer-prefix", path_regex="^/q/"),
    _route("prefix-longer-than-regex", path_prefix="/q/very/long/"),
    _route("regex-from-start", path_regex="/inner"),
    # methods: a route with methods beats one without
    _route("m-any", path="/m"),
    _route("m-write", path="/m", methods=["POST", "PUT"]),
    _route("only-post", path="/only-post", methods=["POST"]),
    # ties go to the route listed first
    _route("tie-first", hosts=["tie.test"], path_prefix="/t"),
    _route("tie-second", hosts=["tie.test"], path_prefix="/t"),
]


@pytest.fixture(scope="module")
def gw(module_gateways):
    return module_gateways.start({"routes": ROUTES})


CASES = [
    # (method, host, path, winning route or 404)
    ("GET", "a.wild.test", "/x", "wild"),
    ("GET", "deep.a.wild.test", "/x", "wild"),
    ("GET", "exact.wild.test", "/x", "exact-host"),
    ("GET", "EXACT.Wild.Test", "/x", "exact-host"),
    ("GET", "exact.wild.test:8080", "/x", "exact-host"),
    ("GET", "wild.test", "/x", 404),
    ("GET", "hostwins.test", "/p/long/42", "host-beats-path"),
    ("GET", "any.test", "/p/long/42", "exact"),
    ("GET", "any.test", "/p/long/42?x=1", "exact"),
    ("GET", "any.test", "/p/long/43", "regex"),
    ("GET", "any.test", "/p/long/abc", "prefix-long"),
    ("GET", "any.test", "/p/other", "prefix-short"),
    ("GET", "any.test", "/p", 404),
    ("GET", "any.test", "/q/very/long/x", "regex-beats-longer-prefix"),
    ("GET", "any.test", "/inner/x", "regex-from-start"),
    ("GET", "any.test", "/a/inner", 404),
    ("GET", "any.test", "/m", "m-any"),
    ("DELETE", "any.test", "/m", "m-any"),
    ("POST", "any.test", "/m", "m-write"),
    ("PUT", "any.test", "/m", "m-write"),
    ("POST", "any.test", "/only-post", "only-post"),
    ("GET", "any.test", "/only-post", 404),
    ("GET", "tie.test", "/t/1", "tie-first"),
    ("GET", "any.test", "/nothing-here", 404),
]


@pytest.mark.parametrize("method, host, path, expected", CASES,
                         ids=[f"{m}-{h}-{p}" for m, h, p, _ in CASES])
def test_most_specific_route_wins(gw, method, host, path, expected):
    response = httpx.request(method, gw.url(path), headers={"Host": host}, timeout=10)
    if expected == 404:
        assert_json_error(response, 404)
    else:
        assert response.status_code == 200, response.text
        assert response.text == expected


def test_respond_route_answers_its_status_body_and_content_type(module_gateways):
    gw = module_gateways.start({"routes": [{
        "name": "teapot", "path": "/tea",
        "respond": {"status": 418, "body": '{"short": "stout"}', "content_type": "application/json"},
    }]})
    response = httpx.get(gw.url("/tea"), timeout=10)
    assert response.status_code == 418
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {"short": "stout"}
