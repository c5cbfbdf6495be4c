"""The admin API of upstream servers: add, remove, drain and weigh servers at run time, through the real
admin listener, reaching every worker; guarded by the admin token; gone after a reload."""

import signal
import threading

import httpx

from tests.support.wait import wait_until

TOKEN = "s3cret-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def _config(servers: list, balance: str = "round_robin", token: str = TOKEN) -> dict:
    return {"admin": {"token": token},
            "upstreams": [{"name": "up", "servers": [s.address for s in servers], "balance": balance}],
            "routes": [{"path_prefix": "/", "upstream": "up"}]}


def _api(gw, method: str, path: str, headers=AUTH, **kwargs) -> httpx.Response:
    return httpx.request(method, f"http://127.0.0.1:{gw.admin_port}{path}", headers=headers, timeout=10, **kwargs)


def _reached(server) -> int:
    return len(server.requests_with("/work"))


def _batch(gw, n: int = 12) -> list[int]:
    return [httpx.get(gw.url(f"/work?n={i}"), timeout=10).status_code for i in range(n)]


def _serves_only(gw, wanted: list, unwanted: list) -> bool:
    """A batch of requests (new connections: every worker) all 200, reaching each of ``wanted``, none of ``unwanted``."""
    before = {id(s): _reached(s) for s in wanted + unwanted}
    ok = _batch(gw) == [200] * 12
    return ok and all(_reached(s) > before[id(s)] for s in wanted) and all(
        _reached(s) == before[id(s)] for s in unwanted)


def _addresses(document: dict) -> list[str]:
    return [s["address"] for s in document["servers"]]


def test_add_drain_and_remove_reach_every_worker(gateways, three_upstreams):
    a, b, c = three_upstreams
    gw = gateways.start(_config([a, b]), workers=2)
    assert _serves_only(gw, [a, b], [c])

    added = _api(gw, "POST", "/upstreams/up/servers", json={"address": c.address})
    assert added.status_code == 201, added.text
    assert _addresses(added.json()) == [a.address, b.address, c.address]
    wait_until(lambda: _serves_only(gw, [a, b, c], []), "every worker sends requests to the added server")

    drained = _api(gw, "PATCH", f"/upstreams/up/servers/{a.address}", json={"drain": True})
    assert drained.status_code == 200 and drained.json()["servers"][0] == {"address": a.address, "drain": True}
    wait_until(lambda: _serves_only(gw, [b, c], [a]), "no worker sends requests to the drained server")
    assert _api(gw, "PATCH", f"/upstreams/up/servers/{a.address}", json={"drain": False}).status_code == 200
    wait_until(lambda: _serves_only(gw, [a, b, c], []), "an undrained server takes requests again")

    removed = _api(gw, "DELETE", f"/upstreams/up/servers/{b.address}")
    assert removed.status_code == 200 and _addresses(removed.json()) == [a.address, c.address]
    wait_until(lambda: _serves_only(gw, [a, c], [b]), "no worker sends requests to the removed server")
    listing = _api(gw, "GET", "/upstreams").json()
    assert _addresses(listing["upstreams"]["up"]) == [a.address, c.address]


def test_weights_set_through_the_api_steer_the_balancer(gateways, three_upstreams):
    a, b, _ = three_upstreams
    gw = gateways.start(_config([a, b], balance="weighted_round_robin"), workers=1)
    assert _api(gw, "PATCH", f"/upstreams/up/servers/{a.address}", json={"weight": 3}).status_code == 200
    before = (_reached(a), _reached(b))
    assert _batch(gw, 40) == [200] * 40
    assert (_reached(a) - before[0], _reached(b) - before[1]) == (30, 10)


def test_a_request_in_flight_to_a_removed_server_finishes(gateways, three_upstreams):
    a, b, _ = three_upstreams
    gw = gateways.start(_config([a]), workers=1)
    with httpx.Client(timeout=10) as client:
        result: list = []
        slow = threading.Thread(target=lambda: result.append(client.get(gw.url("/slow?delay=2"))))
        slow.start()
        a.wait_request("/slow")
        assert _api(gw, "POST", "/upstreams/up/servers", json={"address": b.address}).status_code == 201
        assert _api(gw, "DELETE", f"/upstreams/up/servers/{a.address}").status_code == 200
        assert _serves_only(gw, [b], [a])
        slow.join(10)
    assert result and result[0].status_code == 200


def test_the_token_guards_the_api(gateways, three_upstreams):
    a, b, c = three_upstreams
    gw = gateways.start(_config([a, b]), workers=1)
    body = {"address": c.address}
    missing = _api(gw, "POST", "/upstreams/up/servers", headers={}, json=body)
    wrong = _api(gw, "POST", "/upstreams/up/servers", headers={"Authorization": "Bearer nope"}, json=body)
    assert (missing.status_code, wrong.status_code) == (401, 401)
    assert missing.json()["error"] == "a valid admin token is required"
    assert _api(gw, "GET", "/upstreams", headers={}).status_code == 401
    assert _serves_only(gw, [a, b], [c])  # nothing changed


def test_without_a_token_the_servers_can_be_read_but_not_changed(gateways, three_upstreams):
    a, _, c = three_upstreams
    gw = gateways.start(_config([a], token=""), workers=1)
    assert _addresses(_api(gw, "GET", "/upstreams/up", headers={}).json()) == [a.address]
    refused = _api(gw, "POST", "/upstreams/up/servers", headers={}, json={"address": c.address})
    assert refused.status_code == 403 and "admin.token" in refused.json()["error"]


def test_bad_requests_get_a_json_reason(gateways, three_upstreams):
    a, b, _ = three_upstreams
    gw = gateways.start(_config([a]), workers=1)
    cases = [
        ("POST", "/upstreams/up/servers", {"content": b"{not json"}, 400, "bad JSON body"),
        ("POST", "/upstreams/up/servers", {"json": {"address": b.address, "colour": "red"}}, 400, "colour"),
        ("POST", "/upstreams/up/servers", {"json": {"address": "no-port"}}, 400, "is not host:port"),
        ("POST", "/upstreams/up/servers", {"json": {"address": b.address, "weight": 0}}, 400, "weight"),
        ("POST", "/upstreams/up/servers", {"json": {"address": a.address}}, 409, "already has server"),
        ("PATCH", f"/upstreams/up/servers/{a.address}", {"json": {}}, 400, "give weight, drain or both"),
        ("PATCH", f"/upstreams/up/servers/{b.address}", {"json": {"drain": True}}, 404, "has no server"),
        ("DELETE", "/upstreams/nope/servers/1.2.3.4:80", {}, 404, "no upstream named 'nope'"),
        ("PUT", "/upstreams/up/servers", {"json": {"address": b.address}}, 405, "POST only"),
    ]
    for method, path, kwargs, status, reason in cases:
        response = _api(gw, method, path, **kwargs)
        assert response.status_code == status, (method, path, response.text)
        assert response.headers["content-type"] == "application/json"
        assert reason in response.json()["error"] and response.json()["status"] == status, response.text
    assert _addresses(_api(gw, "GET", "/upstreams/up").json()) == [a.address]


def test_a_reload_forgets_the_changes(gateways, three_upstreams):
    a, b, c = three_upstreams
    gw = gateways.start(_config([a, b]), workers=1)
    assert _api(gw, "DELETE", f"/upstreams/up/servers/{a.address}").status_code == 200
    assert _api(gw, "POST", "/upstreams/up/servers", json={"address": c.address}).status_code == 201
    assert _serves_only(gw, [b, c], [a])
    gw.signal(signal.SIGHUP)
    wait_until(lambda: "reloaded: generation 2" in gw.log_text(), "the reload is promoted")
    assert _addresses(_api(gw, "GET", "/upstreams/up").json()) == [a.address, b.address]
    wait_until(lambda: _serves_only(gw, [a, b], [c]), "the config's servers serve again")
