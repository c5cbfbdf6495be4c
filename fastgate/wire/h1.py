"""HTTP/1.1 message heads as bytes, sans-IO (no asyncio here).

Theory of operation
-------------------
fastgate relays HTTP/1.1 heads as bytes with targeted edits instead of
rebuilding them header by header in Python (see DESIGN.md, hot path). The
connection code finds the end of a head (CRLF CRLF) itself and hands the
complete head to the functions here:

1. a fresh httptools parser validates the whole head strictly (no
   leniencies) and reports method, version and keep-alive;
2. one regex pass over the lower-cased head locates only the headers that decide
   something (Host, Connection, Content-Length, Transfer-Encoding, Upgrade,
   Expect, X-Request-ID, X-Forwarded-*, traceparent, and the hop-by-hop ones);
3. the caller copies the head's header block verbatim except for the spans
   listed in ``drops`` and appends what it adds (``splice_headers``).

Bodies never pass through httptools: they are framed by Content-Length,
by ``ChunkedFramer`` (chunked.py) or, for responses, by connection close.

A head is ``raw``: the request or status line, then one ``\\r\\nName: value``
per header, then ``\\r\\n\\r\\n``. ``line_end`` is the offset of the first
CRLF; a drop span ``(start, end)`` covers ``\\r\\nName: value`` of one header.
"""

import re

import httptools

from fastgate.wire.errors import HeadError
from fastgate.wire.params import cookie_value
from fastgate.wire.target import DEFAULT_PATH_RULES, PathRules, split_target

HEAD_END = b"\r\n\r\n"

_REQUEST_FIELDS = re.compile(
    rb"\r\n(host|connection|content-length|transfer-encoding|upgrade|expect|x-request-id"
    rb"|x-forwarded-for|x-forwarded-proto|x-forwarded-host|keep-alive|te|trailer|traceparent"
    rb"|proxy-[!#$%&'*+.^_`|~0-9a-z-]*)[ \t]*:[ \t]*([^\r]*)"
)
_RESPONSE_FIELDS = re.compile(
    rb"\r\n(connection|content-length|transfer-encoding|upgrade|keep-alive|te|trailer|x-request-id"
    rb"|proxy-[!#$%&'*+.^_`|~0-9a-z-]*)[ \t]*:[ \t]*([^\r]*)"
)
# Request headers that never travel upstream as the client sent them: hop-by-hop
# ones, the X-Forwarded-* that the gateway sets itself, and Expect, which the
# gateway answers itself.
_REQUEST_DROPPED = frozenset(
    (b"connection", b"keep-alive", b"te", b"trailer", b"x-forwarded-for", b"x-forwarded-proto",
     b"x-forwarded-host", b"expect")
)
_RESPONSE_DROPPED = frozenset((b"connection", b"keep-alive", b"te", b"trailer"))
_CONNECTION_KNOWN = frozenset((b"close", b"keep-alive", b"upgrade", b""))
_MAX_REQUEST_ID = 200
_BODY_OFTEN_IGNORED = frozenset((b"GET", b"HEAD", b"OPTIONS", b"DELETE", b"TRACE"))


class _NoCallbacks:
    """httptools calls back only the methods that exist: none, here."""


_NO_CALLBACKS = _NoCallbacks()


class RequestHead:
    """What the proxy needs to know of one request head."""

    __slots__ = (
        "raw", "lowered", "line_end", "method", "target", "path", "query", "http_1_0", "keep_alive",
        "host", "host_span", "content_length", "chunked", "upgrade", "expect_continue",
        "request_id", "forwarded_for", "drops", "line_as_is", "has_body", "traceparent", "traceparent_spans",
        "chunked_span", "reuse_upstream", "http2", "grpc",
    )

    def __init__(self, raw: bytes, line_end: int) -> None:
        self.raw = raw
        self.lowered = raw
        """``raw`` in lower case, once the head's fields are read (the access log looks in it)."""
        self.line_end = line_end
        self.method = b""
        self.target = b""
        """Origin-form target (path and query) to send upstream."""
        self.path = b""
        self.query = b""
        """The query string with its leading "?", or b""."""
        self.http_1_0 = False
        self.http2 = False
        """The request came over HTTP/2 (transport/h2_stream.py renders it as this HTTP/1.1 head);
        the access log's protocol is then "HTTP/2.0"."""
        self.grpc = False
        """A gRPC call: an HTTP/2 request with a gRPC content-type (set by the HTTP/2 adapter)."""
        self.keep_alive = True
        self.host = b""
        """Host header value as sent (with port), or b""."""
        self.host_span: tuple[int, int] | None = None
        self.content_length = -1
        """Declared body length, or -1 when there is no Content-Length."""
        self.chunked = False
        self.chunked_span: tuple[int, int] | None = None
        """Span of Transfer-Encoding, dropped when the body goes upstream re-framed by Content-Length."""
        self.upgrade = b""
        """The Upgrade header's value on an upgrade request (e.g. b"websocket"), else b""; the
        route keeps only the protocols it allows (``allowed_upgrade``)."""
        self.expect_continue = False
        self.request_id = b""
        self.forwarded_for = b""
        self.drops: list[tuple[int, int]] = []
        self.line_as_is = True
        """The request line can go upstream unchanged (HTTP/1.1, origin-form)."""
        self.has_body = False
        self.reuse_upstream = True
        """False when the upstream connection must not serve another request after this one: a body
        on a method whose body servers commonly ignore, which such a server would read as a second
        request (the CL.0 desync) whose answer could reach another client."""
        self.traceparent = b""
        """The client's traceparent value; b"" when absent, b"repeated" when sent more than once."""
        self.traceparent_spans: tuple[tuple[int, int], ...] = ()
        """Spans of the client's traceparent headers, dropped when the gateway sends its own."""

    # The lookups below serve the route matcher (routing/match.py, its MatchRequest) and filters
    # that ask for a header by name: one regex pass over the head per call, nothing cached, so a
    # request that nobody asks about pays nothing.

    def header(self, name: bytes) -> bytes | None:
        """The value of header ``name`` (lower case) without surrounding blanks, None when absent;
        a header sent several times gives its values joined with ", " (RFC 9110 5.3)."""
        values = _header_pattern(name).findall(self.raw)
        if not values:
            return None
        if len(values) == 1:
            return values[0].rstrip()
        return b", ".join([v.rstrip() for v in values])

    def cookie(self, name: bytes) -> bytes | None:
        """The value of the first cookie called ``name`` (case-sensitive) in the Cookie header or
        headers, None when absent (see wire/params.py ``cookie_value``)."""
        fields = _header_pattern(b"cookie").findall(self.raw)
        return cookie_value(fields, name) if fields else None


class ResponseHead:
    """What the proxy needs to know of one response head."""

    __slots__ = (
        "raw", "line_end", "status", "keep_alive", "content_length", "chunked", "until_close",
        "drops", "encoding_span", "request_id_span",
    )

    def __init__(self, raw: bytes, line_end: int) -> None:
        self.raw = raw
        self.line_end = line_end
        self.status = 0
        self.keep_alive = True
        self.content_length = -1
        self.chunked = False
        self.until_close = False
        """The body runs until the server closes the connection."""
        self.drops: list[tuple[int, int]] = []
        self.encoding_span: tuple[int, int] | None = None
        """Span of Transfer-Encoding, dropped when the body is relayed without its chunked coding."""
        self.request_id_span: tuple[int, int] | None = None
        """Span of the upstream's X-Request-ID, dropped when the gateway echoes its own."""


def new_request_parser() -> httptools.HttpRequestParser:
    return httptools.HttpRequestParser(_NO_CALLBACKS)


def parse_request_head(
    raw: bytes, max_line_bytes: int, max_headers: int, parser: httptools.HttpRequestParser,
    rules: PathRules = DEFAULT_PATH_RULES,
) -> RequestHead:
    """Validate and digest a complete request head (ending in CRLF CRLF); raise HeadError.

    ``parser`` must be fresh, or one whose last head had no body and no
    upgrade (httptools then waits for the next message); a parser that has
    seen any other head must not be used again. ``rules`` say how the path
    is normalised (wire/target.py).
    """
    line_end = raw.find(b"\r\n")
    if line_end > max_line_bytes:
        raise HeadError(414, "request line too long")
    if raw.count(b"\r\n") - 2 > max_headers:
        raise HeadError(431, "too many header fields")
    _validate(parser, raw, 400, "malformed request")
    head = RequestHead(raw, line_end)
    head.method = method = parser.get_method()
    if method == b"CONNECT":
        raise HeadError(405, "CONNECT is not supported")
    version = parser.get_http_version()
    if version == "1.0":
        head.http_1_0 = True
        head.line_as_is = False
    elif version != "1.1":
        raise HeadError(505, "HTTP version not supported")
    # httptools checked the method token and "HTTP/d.d" CRLF, but lets a run of spaces through
    if raw.count(b" ", 0, line_end) != 2:
        raise HeadError(400, "the request line is not method SP target SP version")
    target = raw[len(method) + 1 : line_end - 9]
    authority = None
    if target[:1] != b"/":
        target, authority = _origin_form(target, method)
        head.line_as_is = False
    if target == b"*":
        head.path = target
    else:
        head.path, head.query, changed = split_target(target, rules)
        if changed:
            target = head.path + head.query
            head.line_as_is = False
    head.target = target
    _digest_request_fields(head, raw, parser.should_upgrade())
    if authority is not None and authority != head.host:
        raise HeadError(400, "absolute-form target names another host than Host")
    return head


def _validate(parser, raw: bytes, status: int, what: str) -> None:
    """Feed a whole head to httptools; its complaint becomes HeadError(status)."""
    try:
        parser.feed_data(raw)
    except httptools.HttpParserUpgrade:
        pass
    except httptools.HttpParserError as exc:
        raise HeadError(status, f"{what}: {exc}") from None


def _origin_form(target: bytes, method: bytes) -> tuple[bytes, bytes | None]:
    """The origin-form of an asterisk-form or absolute-form target, and the authority it named."""
    if target == b"*":
        if method == b"OPTIONS":
            return target, None
        raise HeadError(400, "the asterisk-form target is only for OPTIONS")
    scheme_end = target.find(b"://")
    if target[:scheme_end].lower() not in (b"http", b"https"):
        raise HeadError(400, "bad request target")
    rest = target[scheme_end + 3 :]
    end = len(rest)
    for stop in (b"/", b"?"):
        at = rest.find(stop)
        if 0 <= at < end:
            end = at
    authority = rest[:end].lower()
    if not _valid_host(authority):
        raise HeadError(400, "bad authority in the request target")
    origin = rest[end:]
    return (origin if origin[:1] == b"/" else b"/" + origin), authority


_HOST = re.compile(rb"(?:[a-z0-9._~-]*|\[[0-9a-f:.]+\])(?::([0-9]{0,5}))?")
"""uri-host [":" port] (RFC 9110 7.2, RFC 3986 3.2.2), lower case: a reg-name of unreserved
characters (no percent-encoding, no sub-delims) or an IPv6 literal."""
_CONNECTION_FORBIDDEN = frozenset((b"content-length", b"transfer-encoding", b"host"))
"""Fields that frame or route a request: a Connection header naming one is refused, never obeyed."""


def _valid_host(value: bytes) -> bool:
    m = _HOST.fullmatch(value)
    return m is not None and (not m.group(1) or int(m.group(1)) <= 65535)


def _digest_request_fields(head: RequestHead, raw: bytes, upgrade: bool) -> None:
    drops = head.drops
    connection_tokens: list[bytes] = []
    upgrade_value = b""
    head.lowered = lowered = raw.lower()
    for m in _REQUEST_FIELDS.finditer(lowered):
        name = m.group(1)
        if name == b"host":
            if head.host_span is not None:
                raise HeadError(400, "more than one Host header")
            head.host = host = m.group(2).rstrip()
            if not _valid_host(host):
                raise HeadError(400, "bad Host header")
            head.host_span = m.span()
        elif name == b"content-length":
            head.content_length = int(m.group(2))
        elif name == b"transfer-encoding":
            if m.group(2).rstrip() != b"chunked":  # httptools let through only a list ending in chunked
                raise HeadError(501, "transfer codings other than chunked are not supported")
            head.chunked = True
            head.chunked_span = m.span()
        elif name == b"x-request-id":
            value = raw[m.start(2) : m.end(2)].rstrip()
            if 0 < len(value) <= _MAX_REQUEST_ID and not head.request_id:
                head.request_id = value
            else:
                drops.append(m.span())
        elif name == b"upgrade":
            upgrade_value = raw[m.start(2) : m.end(2)].rstrip()
            drops.append(m.span())
        elif name in _REQUEST_DROPPED:
            drops.append(m.span())
            if name == b"connection":
                connection_tokens += _tokens(m.group(2))
            elif name == b"x-forwarded-for":
                value = raw[m.start(2) : m.end(2)].rstrip()
                head.forwarded_for = value if not head.forwarded_for else head.forwarded_for + b", " + value
            elif name == b"expect":
                if m.group(2).rstrip() != b"100-continue":
                    raise HeadError(417, "unsupported expectation")
                head.expect_continue = not head.http_1_0
        elif name == b"traceparent":
            head.traceparent = b"repeated" if head.traceparent_spans else raw[m.start(2) : m.end(2)].rstrip()
            head.traceparent_spans += (m.span(),)
        else:  # proxy-*
            drops.append(m.span())
    if head.host_span is None and not head.http_1_0:
        raise HeadError(400, "missing Host header")
    head.has_body = head.chunked or head.content_length > 0
    if head.has_body and head.method in _BODY_OFTEN_IGNORED:
        head.reuse_upstream = False
    if head.chunked and head.http_1_0:
        raise HeadError(400, "Transfer-Encoding in an HTTP/1.0 request")
    if upgrade:
        if not upgrade_value:
            raise HeadError(400, "upgrade without an Upgrade header")
        if head.has_body:
            raise HeadError(400, "an upgrade request with a body")
        head.upgrade = upgrade_value
    head.keep_alive = _keep_alive(head.http_1_0, connection_tokens)
    if connection_tokens and not _CONNECTION_KNOWN.issuperset(connection_tokens):
        _drop_connection_named(head, raw, [t for t in connection_tokens if t not in _CONNECTION_KNOWN])
    if len(drops) > 1:
        drops.sort()


def _drop_connection_named(head: RequestHead, raw: bytes, names: list[bytes]) -> None:
    """The fields a Connection header names are hop-by-hop: they go no further (RFC 9110 7.6.1).

    One that frames or routes the request cannot be: removing it would make
    the upstream read the bytes differently from the gateway, so the request is
    refused. One the gateway reads (X-Request-ID, X-Forwarded-For, traceparent)
    is forgotten as if never sent.
    """
    if _CONNECTION_FORBIDDEN.intersection(names):
        raise HeadError(400, "Connection names a field that frames or routes the request")
    if b"x-request-id" in names:
        head.request_id = b""
    if b"x-forwarded-for" in names:
        head.forwarded_for = b""
    if b"traceparent" in names:
        head.traceparent = b""
        head.traceparent_spans = ()
    head.drops.extend(_spans_of(raw, names))


def allowed_upgrade(value: bytes, allowed: frozenset) -> bytes:
    """The protocols of an Upgrade value whose names (lower case, without "/version") are in
    ``allowed``, as the client wrote them; b"" when none is."""
    kept = [p for p in (t.strip() for t in value.split(b",")) if p.split(b"/", 1)[0].lower() in allowed]
    return b", ".join(kept)


def _tokens(value: bytes) -> tuple[bytes, ...] | list[bytes]:
    """The tokens of a (lower-cased) Connection header value."""
    value = value.rstrip()
    if value in _CONNECTION_KNOWN:
        return (value,)
    return [t.strip() for t in value.split(b",")]


def _keep_alive(http_1_0: bool, connection_tokens: list[bytes]) -> bool:
    """Persistence per RFC 9112 9.3 (httptools forgets it once a bodiless message completes)."""
    if http_1_0:
        return b"keep-alive" in connection_tokens
    return b"close" not in connection_tokens


def parse_response_head(raw: bytes, request_method: bytes) -> ResponseHead:
    """Validate and digest a complete response head; raise HeadError(502) when it is broken."""
    line_end = raw.find(b"\r\n")
    parser = httptools.HttpResponseParser(_NO_CALLBACKS)
    _validate(parser, raw, 502, "malformed response from upstream")
    head = ResponseHead(raw, line_end)
    head.status = status = parser.get_status_code()
    drops = head.drops
    connection_tokens: list[bytes] = []
    encoded = False
    for m in _RESPONSE_FIELDS.finditer(raw.lower()):
        name = m.group(1)
        if name == b"content-length":
            head.content_length = int(m.group(2))
        elif name == b"x-request-id":
            head.request_id_span = m.span()
        elif name == b"transfer-encoding":
            encoded = True
            head.encoding_span = m.span()
            head.chunked = m.group(2).rsplit(b",", 1)[-1].strip() == b"chunked"
        elif name == b"upgrade":
            if status != 101:
                drops.append(m.span())
        else:
            if name == b"connection":
                connection_tokens += _tokens(m.group(2))
                if status == 101:
                    continue
            drops.append(m.span())
    head.keep_alive = _keep_alive(raw[5:8] == b"1.0", connection_tokens)
    if encoded and not head.chunked:
        head.until_close = True
        head.keep_alive = False
    if request_method == b"HEAD" or status < 200 or status in (204, 304):
        head.content_length = 0
        head.chunked = False
        head.until_close = False
    elif not head.chunked and head.content_length < 0:
        head.until_close = True
        head.keep_alive = False
    if connection_tokens and not _CONNECTION_KNOWN.issuperset(connection_tokens):
        drops.extend(_spans_of(raw, [t for t in connection_tokens if t not in _CONNECTION_KNOWN]))
    if len(drops) > 1:
        drops.sort()
    return head


_HEADER_PATTERNS: dict[bytes, re.Pattern] = {}


def _header_pattern(name: bytes) -> re.Pattern:
    """The pattern of header ``name`` (lower case) in a head, its group the value; compiled once
    per name (names come from the config)."""
    pattern = _HEADER_PATTERNS.get(name)
    if pattern is None:
        pattern = _HEADER_PATTERNS[name] = re.compile(
            rb"\r\n" + re.escape(name) + rb"[ \t]*:[ \t]*([^\r]*)", re.IGNORECASE)
    return pattern


def header_value(raw: bytes, name: bytes) -> bytes | None:
    """The value of the first header called ``name`` (lower case) in a head, or None.

    For the few headers a filter asks for by name; the pattern per name is
    compiled once.
    """
    m = _header_pattern(name).search(raw)
    return m.group(1).rstrip() if m else None


def _spans_of(raw: bytes, names: list[bytes]) -> list[tuple[int, int]]:
    """Spans of the headers named in a Connection header (the rare, slow path)."""
    pattern = re.compile(
        rb"\r\n(?:" + b"|".join(re.escape(n) for n in names) + rb")[ \t]*:[^\r]*", re.IGNORECASE
    )
    return [m.span() for m in pattern.finditer(raw)]


def splice_headers(parts: list, raw: bytes, line_end: int, drops: list) -> None:
    """Append to ``parts`` the header block of ``raw`` without the ``drops`` spans.

    What is appended starts with ``\\r\\n`` and stops before the head's final
    ``\\r\\n\\r\\n``, so more ``\\r\\nName: value`` pieces can follow it.
    """
    block_end = len(raw) - 4
    if not drops:
        parts.append(raw[line_end:block_end])
        return
    pos = line_end
    last = None
    for start, end in drops:
        if (start, end) == last:
            continue
        last = (start, end)
        if start > pos:
            parts.append(raw[pos:start])
        pos = max(pos, end)
    if pos < block_end:
        parts.append(raw[pos:block_end])
