"""The filter contract (filters/base.py) as the session runs it: chains per phase, answers,
awaitables, header changes, the log hook; and the built-in filters a route is compiled into."""

import asyncio
from types import SimpleNamespace

import pytest

from fastgate.config.load import load_config
from fastgate.config.schema import HeaderEdits
from fastgate.filters.aggregate import AggregateFilter
from fastgate.filters.base import Answer, Deferred, Filter, HeaderChanges
from fastgate.filters.chain import FilterChain, gateway_filters
from fastgate.filters.header_edits import HeaderEditsFilter
from fastgate.filters.rate_limit import RateLimitFilter
from fastgate.filters.respond import RespondFilter
from fastgate.filters.tracing import TracingFilter
from fastgate.proxy.heads import client_response_head, upstream_request_head
from fastgate.proxy.session import ProxySession
from fastgate.wire.h1 import new_request_parser, parse_request_head, parse_response_head

CONFIG = """
[[listeners]]
address = "127.0.0.1:8080"

[[upstreams]]
name = "api"
servers = ["127.0.0.1:9"]

[[routes]]
path_prefix = "/api/"
upstream = "api"
request_headers = { set = { "X-From" = "gate" } }
response_headers = { add = { "X-Route" = "api" } }
limits = [{ key = ["ip"], rate = "5/s" }]

[[routes]]
path = "/hello"
respond = { status = 201, body = "hi" }
response_headers = { set = { "Cache-Control" = "no-store" } }

[[routes]]
path = "/dash"
aggregate = [{ key = "a", upstream = "api", path = "/a" }]
"""


@pytest.fixture
def loaded(tmp_path):
    path = tmp_path / "gate.conf"
    path.write_text(CONFIG)
    return load_config(str(path))


def route_named(loaded, path: bytes):
    return loaded.router.match(b"", path, b"GET")


def test_a_route_is_compiled_into_its_filters(loaded):
    api = route_named(loaded, b"/api/x")
    assert [type(f) for f in api.filters.filters] == [RateLimitFilter, HeaderEditsFilter]
    assert [type(f) for f in api.filters.request] == [RateLimitFilter]
    assert api.filters.upstream_request == api.filters.response == api.filters.log == ()
    assert api.request_edits.extra == b"\r\nX-From: gate" and api.response_edits.extra == b"\r\nX-Route: api"
    hello = route_named(loaded, b"/hello")
    assert [type(f) for f in hello.filters.request] == [RespondFilter]
    dash = route_named(loaded, b"/dash")
    assert [type(f) for f in dash.filters.request] == [AggregateFilter]
    assert b"\r\nAccept: application/json" in dash.request_edits.extra  # the aggregate filter's load-time edits


class Reads(Filter):
    body_bytes = 10

    def request(self, session):
        return None


class Edits(Filter):
    def upstream_request(self, session, changes):
        changes.remove(b"x-secret")
        changes.set(b"X-User", session.header(b"x-token") or b"none")

    def response(self, session, head, changes):
        changes.remove(b"server")
        changes.add(b"X-Status", b"%d" % head.status)


def test_a_chain_holds_only_the_filters_that_override_each_hook():
    chain = FilterChain((Reads(), Edits(), HeaderEditsFilter(*[None] * 2), MadeId()))
    assert [type(f) for f in chain.early] == [MadeId]
    assert [type(f) for f in chain.request] == [Reads]
    assert [type(f) for f in chain.upstream_request] == [Edits] == [type(f) for f in chain.response]
    assert chain.log == () and chain.body_bytes == 10


def test_header_changes_refuse_what_would_split_a_head():
    changes = HeaderChanges()
    for bad in ((b"X-A", b"1\r\nX-B: 2"), (b"X A", b"1"), (b"", b"1"), (b"X-A", b"\0")):
        with pytest.raises(ValueError):
            changes.add(*bad)
    changes.add(b"X-A", b"1")
    changes.set(b"x-a", b"2")
    assert changes.added == [b"\r\nx-a: 2"] and changes.removed == [b"x-a"]


# -- the session running a route's chain ----------------------------------------------------------

class Downstream:
    """What an adapter offers the session, recording the answer."""

    closed = False

    def __init__(self):
        self.answers = []

    def write_answer(self, status, fields, body, close):
        self.answers.append((status, fields, body))

    def response_done(self):
        pass

    def close(self):
        self.closed = True

    def response_sent(self):
        return False

    def forget_response(self):
        pass


class Observer:
    def __init__(self):
        self.done = []

    def done_(self, session, status):
        self.done.append(status)


class MadeId(Filter):
    """An early filter that only looks."""

    def early(self, session):
        session.state["early"] = True


def session_for(loaded, filters, loop=None):
    route = route_named(loaded, b"/hello")
    route.attach_filters(FilterChain(tuple(filters) + (
        RespondFilter(SimpleNamespace(status=201, body="hi", content_type="text/plain")),
        HeaderEditsFilter(HeaderEdits(), HeaderEdits(set={"Cache-Control": "no-store"})))))
    observer = Observer()
    ctx = SimpleNamespace(
        router=SimpleNamespace(match=lambda *a: route), request_ids=SimpleNamespace(next=lambda: b"rid-1"),
        early_filters=(),
        observer=SimpleNamespace(done=observer.done_), clock=SimpleNamespace(loop=loop))
    downstream = Downstream()
    session = ProxySession(ctx, downstream, b"10.0.0.1", "10.0.0.1", b"\r\nX-Forwarded-Proto: https")
    return session, downstream, observer


def start(session, raw=b"GET /hello?q=1 HTTP/1.1\r\nHost: a.test\r\nX-Token: t1\r\n\r\n"):
    session.begin(len(raw))
    session.start(parse_request_head(raw, 8192, 100, new_request_parser()))


class Deny(Filter):
    def request(self, session):
        if session.header(b"x-token") == b"t1":
            return Answer.failure(403, "token t1 is banned", b"\r\nX-Why: ban")
        return None


class Remember(Filter):
    def __init__(self):
        self.seen = []

    def request(self, session):
        session.state["seen"] = True
        self.seen.append((session.method, session.path, session.query, session.authority, session.scheme,
                          session.protocol, session.client_ip))
        return None

    def log(self, session, status):
        self.seen.append(("log", status, session.state.get("seen")))


def test_filters_run_in_order_and_an_answer_ends_the_phase(loaded):
    remember = Remember()
    session, downstream, observer = session_for(loaded, [remember, Deny()])
    start(session)
    ((status, fields, body),) = downstream.answers
    assert status == 403 and b'"error":"token t1 is banned"' in body and b"\r\nX-Why: ban" in fields
    assert b"\r\nX-Request-ID: rid-1" in fields
    assert remember.seen == [(b"GET", b"/hello", b"?q=1", b"a.test", b"https", "HTTP/1.1", b"10.0.0.1"),
                             ("log", 403, True)]
    assert observer.done == [403]


def test_when_every_filter_goes_on_the_last_one_answers(loaded):
    session, downstream, _ = session_for(loaded, [Deny()])
    start(session, b"GET /hello HTTP/1.1\r\nHost: a\r\n\r\n")
    ((status, fields, body),) = downstream.answers
    assert (status, body) == (201, b"hi")
    assert fields == (b"\r\nContent-Type: text/plain\r\nContent-Length: 2\r\nCache-Control: no-store"
                      b"\r\nX-Request-ID: rid-1")


class Later(Filter):
    """Decides on a later loop turn: a Future, or a coroutine."""

    def __init__(self, answer, coroutine=False):
        self.answer = answer
        self.coroutine = coroutine

    def request(self, session):
        if self.coroutine:
            return self._decide()
        future = asyncio.get_running_loop().create_future()
        asyncio.get_running_loop().call_soon(future.set_result, self.answer)
        return future

    async def _decide(self):
        await asyncio.sleep(0)
        return self.answer


@pytest.mark.parametrize("coroutine", [False, True])
def test_an_awaitable_is_waited_for_then_the_chain_goes_on(loaded, coroutine):
    async def run():
        session, downstream, _ = session_for(loaded, [Later(None, coroutine), Later(Answer.of(202, b"later"))],
                                             asyncio.get_running_loop())
        start(session)
        assert downstream.answers == [] and session.waiting is not None
        for _ in range(5):
            await asyncio.sleep(0)
        return downstream.answers

    ((status, _, body),) = asyncio.run(run())
    assert (status, body) == (202, b"later")


def test_a_client_that_leaves_cancels_what_a_filter_awaits(loaded):
    async def run():
        session, downstream, observer = session_for(loaded, [Later(None, coroutine=True)], asyncio.get_running_loop())
        start(session)
        waiting = session.waiting
        session.client_gone(499)
        for _ in range(3):
            await asyncio.sleep(0)
        return waiting, downstream.answers, observer.done

    waiting, answers, done = asyncio.run(run())
    assert waiting.cancelled() and answers == [] and done == [499]


class Deciding(Filter):
    """Returns a Deferred the test resolves (as the Redis rate limiter does from its callback);
    ``early`` resolves it before returning it."""

    def __init__(self, early=False):
        self.early = early
        self.deferred = None

    def request(self, session):
        self.deferred = Deferred()
        if self.early:
            self.deferred.resolve(None)
        return self.deferred


@pytest.mark.parametrize("early", [False, True])
def test_a_deferred_goes_on_inside_resolve_without_a_loop_turn(loaded, early):
    deciding = Deciding(early)
    session, downstream, _ = session_for(loaded, [deciding])  # then the route's own answer: 201 "hi"
    start(session)
    if not early:
        assert downstream.answers == [] and session.waiting is deciding.deferred
        deciding.deferred.resolve(None)
    assert [status for status, _, _ in downstream.answers] == [201]  # no loop ran: it went on in resolve
    assert session.waiting is None


def test_a_deferred_answer_is_the_reply(loaded):
    deciding = Deciding()
    session, downstream, observer = session_for(loaded, [deciding])
    start(session)
    deciding.deferred.resolve(Answer.failure(429, "too many", b"\r\nRetry-After: 1"))
    ((status, fields, body),) = downstream.answers
    assert status == 429 and b"\r\nRetry-After: 1" in fields and b'"error":"too many"' in body
    assert observer.done == [429]


def test_a_client_that_leaves_cancels_a_deferred_and_a_late_resolve_does_nothing(loaded):
    deciding = Deciding()
    session, downstream, observer = session_for(loaded, [deciding])
    start(session)
    session.client_gone(499)
    assert not deciding.deferred.wanted
    deciding.deferred.resolve(Answer.of(202, b"late"))
    assert downstream.answers == [] and observer.done == [499]


class Broken(Filter):
    async def _fail(self):
        raise RuntimeError("the auth service said something odd")

    def request(self, session):
        return self._fail()


def test_a_filter_that_fails_is_a_500_and_the_connection_closes(loaded):
    async def run():
        session, downstream, _ = session_for(loaded, [Broken()], asyncio.get_running_loop())
        start(session)
        for _ in range(3):
            await asyncio.sleep(0)
        return downstream

    downstream = asyncio.run(run())
    assert [a[0] for a in downstream.answers] == [500] and downstream.closed


def test_upstream_request_and_response_edits_reach_the_heads(loaded):
    session, _, _ = session_for(loaded, [])
    route = route_named(loaded, b"/api/x")
    route.attach_filters(FilterChain((Edits(),)))
    raw = b"GET /api/x HTTP/1.1\r\nHost: a\r\nX-Secret: s\r\nX-Token: t9\r\nX-User: forged\r\n\r\n"
    session.head = head = parse_request_head(raw, 8192, 100, new_request_parser())
    session.route = route
    extra = session._filter_upstream_request()
    upstream = upstream_request_head(head, route, b"rid", b"10.0.0.1", b"\r\nX-Forwarded-Proto: http", b"h",
                                     extra=extra)
    assert b"X-Secret" not in upstream and b"forged" not in upstream and b"\r\nX-User: t9\r\n" in upstream
    response = parse_response_head(b"HTTP/1.1 200 OK\r\nServer: secret/1.0\r\nContent-Length: 0\r\n\r\n", b"GET")
    session._filter_response(response)
    sent = client_response_head(response, route, b"rid", False, False, False, session.response_fields)
    assert b"Server" not in sent and b"\r\nX-Status: 200\r\n" in sent


def test_the_gateway_wide_filters_set_the_trace_context_when_tracing_is_on():
    with_tracing = gateway_filters(SimpleNamespace(enabled=True, sample_ratio=1.0))
    assert [type(f) for f in with_tracing.early] == [TracingFilter]
    assert gateway_filters(SimpleNamespace(enabled=False)).early == ()
    session = SimpleNamespace(head=SimpleNamespace(traceparent=b""), traceparent=b"")
    with_tracing.early[0].early(session)
    assert session.traceparent.startswith(b"\r\ntraceparent: 00-")


class Refuse(Filter):
    def early(self, session):
        return Answer.failure(403, "refused before routing")


def test_an_early_answer_comes_before_routing(loaded):
    session, downstream, observer = session_for(loaded, [])
    session.ctx.early_filters = (MadeId(), Refuse())
    start(session)
    ((status, fields, body),) = downstream.answers
    assert status == 403 and b"refused before routing" in body and session.route is None
    assert b"\r\nX-Request-ID: rid-1" in fields and session.state == {"early": True}
