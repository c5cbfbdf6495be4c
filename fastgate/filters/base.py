"""The filter contract: what a step of a route's request path may do, and when it runs.

A filter is made once per route at config load and shared by every request
of that route in a worker: per-request state lives in ``session.state``
(a dict), never on the filter. Every hook is optional; a route calls, in
each phase, only the filters that override that phase's hook (the chains
are built at load, filters/chain.py), so a phase without filters costs
nothing. The same filter serves HTTP/1.1 and HTTP/2 (and what comes next):
it sees the session (proxy/session.py), never the protocol.

The phases, in the order a request meets them (DESIGN "The request path"):

1. ``early(session)``: before routing, by the gateway-wide filters only
   (made in each worker from the config's sections, not a route's: the
   trace context), so that the gateway's own answers (404, 413...) carry
   what they set. None goes on; an Answer replies at once (no awaitable
   here). A route's filters never see this phase.
2. route (the gateway's own): host, path, method, headers, query and
   cookies pick the route; none is 404. With the route comes the request
   id (the client's X-Request-ID, else a new one unless the route says
   ``request_id = false``): the gateway's own, like the route, since its
   answers carry it, and made only where a route wants one.
3. ``request(session)``: the access phase, in chain order (rate limits,
   then the route's own answer if it has one: respond, aggregate,
   redirect). It returns
   - ``None``: go on to the next filter, then upstream;
   - an ``Answer``: reply with it now; no later ``request`` hook runs and
     nothing goes upstream;
   - an awaitable (an asyncio Future, or a coroutine, which is made a
     Task) of ``None`` or an ``Answer``, when the decision must wait
     (Redis, another service). The request waits; if the client leaves
     meanwhile, the awaitable is cancelled. An exception is a 500;
   - or a ``Deferred`` (proxy/deferred.py) the filter resolves later with
     ``None`` or an ``Answer``, from a callback of its own: cheaper than a
     Future (the request goes on inside ``resolve``, not on a later loop
     turn); it is cancelled too when the client leaves.
   A filter that sets ``body_bytes`` gets the first ``body_bytes`` of the
   request body before any ``request`` hook of the route runs
   (``session.body_prefix(n)``); the body still goes upstream whole.
4. ``upstream_request(session, changes)``: once, just before the request
   head is rendered for the upstream (not again on a retry): edit its
   header fields through ``changes`` (HeaderChanges). Plain call.
5. ``response(session, head, changes)``: when the upstream's response head
   arrives, before it goes to the client: ``head.status`` and
   ``header_value(head.raw, name)`` (wire/h1.py) read it; ``changes``
   edits it. Not called for the gateway's own answers. Plain call.
6. ``log(session, status)``: once per request, whatever its end (answered,
   proxied, refused, the client gone: 499), after the access log and the
   metrics saw it. Plain call; it must not raise or block.

Header edits known at load (a route's ``request_headers`` and
``response_headers``) are a filter's ``request_edits`` / ``response_edits``
(config/schema.py HeaderEdits): compiled into the route's heads once, they
cost nothing per request. The hooks are for edits that depend on the request.

What a filter reads on the session: ``method``, ``path`` (normalised, no
query), ``query`` (with its "?", or b""), ``authority`` (Host), ``scheme``,
``protocol`` ("HTTP/1.1", "HTTP/2.0"), ``header(name)`` (bytes or None; a
lower-case name), ``client_ip`` (bytes), ``route`` (its ``name``),
``request_id``, ``state``, ``status`` (of the response, 0 before one), and
``body_prefix(n)``.
"""

from fastgate.config.schema import HeaderEdits
from fastgate.proxy.answer import Answer, HeaderChanges
from fastgate.proxy.deferred import Deferred

__all__ = ["Answer", "Deferred", "Filter", "HeaderChanges"]


class Filter:
    """A step of a route's request path; subclass it and override the hooks you need.

    See the module docstring for when each hook runs and what its return means.
    """

    __slots__ = ()

    body_bytes: int = 0
    """Read this many bytes of the request body before the route's ``request`` hooks (0: none)."""
    request_edits: HeaderEdits | None = None
    """Header edits of every request sent upstream, known at load (compiled once)."""
    response_edits: HeaderEdits | None = None
    """Header edits of every upstream response sent to the client, known at load."""

    def early(self, session):
        """Before routing (gateway-wide filters): None (go on) or an Answer (reply now)."""
        return None

    def request(self, session):
        """The access phase: None (go on), an Answer (reply now), or an awaitable of either."""
        return None

    def upstream_request(self, session, changes: HeaderChanges) -> None:
        """Edit the head about to go upstream."""

    def response(self, session, head, changes: HeaderChanges) -> None:
        """Edit the upstream's response head before the client gets it."""

    def log(self, session, status: int) -> None:
        """The request is over with ``status``."""
