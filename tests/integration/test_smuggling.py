"""Request smuggling and route bypass on the HTTP/1.1 path: what a client sends is either refused
whole, or reaches the upstream as exactly one well-framed request that means the same thing.

Each case sends raw bytes on one client connection: usually an attack followed by a pipelined,
well-formed ``GET /p/<marker>``. The expectation names the exact answer status and, for it,
what the upstream must have received: nothing at all for a refusal (neither the refused request
nor what was pipelined behind it, and the connection closes), or exactly the expected requests
(request line, body bytes, framing headers, no bytes beyond them). A deny route answers 403 by
itself, so a path or host trick that reaches the upstream instead is a route bypass. Some cases
first send a well-formed request, so the attack is parsed after an exchange on the connection.

The upstream is ``RawUpstream`` (tests/support/raw_upstream.py): it records every byte and parses
strictly, so a gateway that forwards ambiguous framing fails even where h11 would be lenient.
After each case a sentinel request on a new connection shows the gateway has finished with the
case (one worker, one upstream), and the last test waits until the upstream is quiet and checks
that no refused marker ever arrived.

The cases follow RFC 9110/9112 and the published desync research (Kettle: "HTTP Desync Attacks"
2019, "HTTP/2: the sequel is always worse", "Browser-powered desync attacks" (CL.0),
"HTTP/1.1 must die" 2025 (TE.0, 0.CL, Expect-based desyncs)).
"""

import uuid
from dataclasses import dataclass

import h11
import pytest

from tests.support.checks import assert_json_error
from tests.support.raw_upstream import FIXED_BODY, ParsedRequest, RawUpstream
from tests.support.rawhttp import RawConnection, Response

CLOSED, SERVED, EITHER = "closed", "served", "either"
"""What happens to the connection after the first answer: closed (nothing pipelined is answered),
the pipelined request is served, or either of the two."""

ANSWER_101 = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n\r\n"
DENIED = b"denied"
CLIENT_TIMEOUT_S = 5.0
REFUSED_MARKERS: list[str] = []
"""Markers of cases after which nothing of the attack may ever reach the upstream (checked last)."""


@pytest.fixture(scope="module")
def raw_up():
    with RawUpstream(answers={"answer101": ANSWER_101}) as server:
        yield server


@pytest.fixture(scope="module")
def gw(module_gateways, raw_up):
    return module_gateways.start({
        "http": {"max_body_size": "1MiB", "max_request_line_size": "2KiB", "max_header_size": "8KiB",
                 "max_headers": 50, "header_timeout": "2s", "body_timeout": "2s"},
        "upstreams": [raw_up.config()],
        "routes": [
            {"name": "admin-deny", "path_prefix": "/admin", "respond": {"status": 403, "body": "denied"}},
            {"name": "internal-deny", "path_regex": "^/internal$", "respond": {"status": 403, "body": "denied"}},
            {"name": "secret-host-deny", "hosts": ["secret.test"], "path_prefix": "/",
             "respond": {"status": 403, "body": "denied"}},
            {"name": "all", "path_prefix": "/", "upstream": "up"},
        ],
    }, workers=1)


# -- the table ---------------------------------------------------------------------------------


@dataclass
class Fwd:
    """One request the upstream must receive; ``{m}`` in target and body is the case's marker."""

    method: str
    target: str
    body: str = ""
    host: str | None = "gw.test"
    """Expected Host and X-Forwarded-Host upstream; None: not checked."""
    absent: tuple[str, ...] = ()
    """Fields that must not reach the upstream."""


@dataclass
class Case:
    raw: str
    """Client bytes (latin-1) before the pipelined request; ``{m}`` is the case's marker."""
    outcomes: dict[int, tuple[tuple[Fwd, ...], str]]
    """Allowed answer statuses, each with what the upstream must get and what follows."""
    before: tuple[str, str] | None = None
    """A well-formed request sent first on the connection (method, body; to ``/p/<another marker>``):
    the case's request is then the second one, parsed after an exchange with the upstream."""


H = "Host: gw.test\r\n"
SMUGGLED = "GET /p/{m}-smuggled HTTP/1.1\r\nHost: gw.test\r\n\r\n"
MARKER_LEN = 13
"""Length of a case's marker (``new_marker``), which replaces each ``{m}``."""


def flen(text: str) -> int:
    """Length of ``text`` once its ``{m}`` are filled in."""
    return len(text.replace("{m}", "m" * MARKER_LEN))


HOP_BY_HOP = ("transfer-encoding", "upgrade", "http2-settings", "expect", "te", "trailer", "keep-alive",
              "proxy-connection")


def refused(case_id: str, raw: str, *statuses: int) -> object:
    return pytest.param(Case(raw, {s: ((), CLOSED) for s in statuses}), id=case_id)


def accepted(case_id: str, raw: str, *fwd: Fwd, status: int = 200, after: str = SERVED) -> object:
    return pytest.param(Case(raw, {status: (fwd, after)}), id=case_id)


def denied(case_id: str, raw: str, after: str = SERVED) -> object:
    return pytest.param(Case(raw, {403: ((), after)}), id=case_id)


def accepted_or_refused(case_id: str, raw: str, *fwd: Fwd) -> object:
    return pytest.param(Case(raw, {200: (fwd, SERVED), 400: ((), CLOSED)}), id=case_id)


def get(target: str, **kw: object) -> Fwd:
    return Fwd("GET", target, **kw)


def post(target: str, body: str, **kw: object) -> Fwd:
    return Fwd("POST", target, body, **kw)


def chunked_post(chunked_body: str, extra: str = "") -> str:
    return "POST /p/{m} HTTP/1.1\r\n" + H + extra + "Transfer-Encoding: chunked\r\n\r\n" + chunked_body


def cl_post(length: str, body: str = "hello", extra: str = "") -> str:
    return "POST /p/{m} HTTP/1.1\r\n" + H + extra + f"Content-Length: {length}\r\n\r\n" + body


def with_header(line: str, method: str = "GET", target: str = "/p/{m}") -> str:
    return f"{method} {target} HTTP/1.1\r\n" + H + line + "\r\n"


def target(t: str, host: str = "gw.test") -> str:
    return f"GET {t} HTTP/1.1\r\nHost: {host}\r\n\r\n"


def with_host(value: str) -> str:
    return f"GET /p/{{m}} HTTP/1.1\r\nHost: {value}\r\n\r\n"


HELLO = post("/p/{m}", "hello")

FRAMING = [
    # the well-formed baselines
    accepted("get", target("/p/{m}"), get("/p/{m}")),
    accepted("head", "HEAD /p/{m} HTTP/1.1\r\n" + H + "\r\n", Fwd("HEAD", "/p/{m}")),
    accepted("post-content-length", cl_post("5"), HELLO),
    accepted("post-content-length-zero", cl_post("0", ""), post("/p/{m}", "")),
    accepted("post-chunked-is-dechunked", chunked_post("5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"),
             post("/p/{m}", "hello world")),
    accepted("get-with-chunked-body", "GET /p/{m} HTTP/1.1\r\n" + H + "Transfer-Encoding: chunked\r\n\r\n"
             "5\r\nhello\r\n0\r\n\r\n", get("/p/{m}", body="hello")),
    # CL.TE / TE.CL (Kettle 2019): both framings present
    refused("cl-te", cl_post("6", "0\r\n\r\nG", extra="Transfer-Encoding: chunked\r\n"), 400),
    refused("te-cl", chunked_post("8\r\nSMUGGLED\r\n0\r\n\r\n", extra="Content-Length: 3\r\n"), 400),
    refused("te-cl-zero", chunked_post("5\r\nhello\r\n0\r\n\r\n", extra="Content-Length: 0\r\n"), 400),
    refused("cl-after-te", "POST /p/{m} HTTP/1.1\r\n" + H + "Transfer-Encoding: chunked\r\nContent-Length: 5\r\n"
            "\r\n0\r\n\r\n", 400),
    # Content-Length values
    refused("cl-duplicate-equal", cl_post("5", extra="Content-Length: 5\r\n"), 400),
    refused("cl-duplicate-conflicting", cl_post("5", "hello!", extra="Content-Length: 6\r\n"), 400),
    refused("cl-list-equal", cl_post("5, 5"), 400),
    refused("cl-list-conflicting", cl_post("5, 6", "hello!"), 400),
    refused("cl-plus", cl_post("+5"), 400),
    refused("cl-negative", cl_post("-5"), 400),
    refused("cl-hex", cl_post("0x5"), 400),
    refused("cl-decimal", cl_post("5.0"), 400),
    refused("cl-exponent", cl_post("5e0"), 400),
    refused("cl-empty", cl_post("", ""), 400),
    refused("cl-inner-space", cl_post("5 5"), 400),
    refused("cl-huge", cl_post("99999999999999999999", ""), 400, 413),
    refused("cl-over-max-body-size", cl_post("2000000", ""), 413),
    refused("cl-space-before-colon", "POST /p/{m} HTTP/1.1\r\n" + H + "Content-Length : 5\r\n\r\nhello", 400),
    refused("cl-obs-fold", "POST /p/{m} HTTP/1.1\r\n" + H + "Content-Length:\r\n 5\r\n\r\nhello", 400),
    refused("cl-nul", cl_post("5\x00"), 400),
    refused("cl-vertical-tab", cl_post("\x0b5"), 400),
    accepted("cl-leading-zeros", cl_post("005"), HELLO),
    accepted("cl-surrounding-whitespace", cl_post("\t5 \t"), HELLO),
    # obfuscated Transfer-Encoding (Kettle 2019)
    refused("te-twice", chunked_post("5\r\nhello\r\n0\r\n\r\n", extra="Transfer-Encoding: chunked\r\n"), 400),
    refused("te-chunked-then-identity", chunked_post("0\r\n\r\n", extra="Transfer-Encoding: identity\r\n"),
            400, 501),
    refused("te-gzip-chunked", with_header("Transfer-Encoding: gzip, chunked\r\n", "POST") + "0\r\n\r\n", 501),
    refused("te-chunked-chunked", with_header("Transfer-Encoding: chunked, chunked\r\n", "POST") + "0\r\n\r\n",
            400, 501),
    refused("te-chunked-not-last", with_header("Transfer-Encoding: chunked, gzip\r\n", "POST") + "0\r\n\r\n", 400),
    refused("te-identity", with_header("Transfer-Encoding: identity\r\n", "POST") + "0\r\n\r\n", 400),
    refused("te-xchunked", with_header("Transfer-Encoding: xchunked\r\n", "POST") + "0\r\n\r\n", 400),
    refused("te-chunked-suffix", with_header("Transfer-Encoding: chunkedx\r\n", "POST") + "0\r\n\r\n", 400),
    refused("te-quoted", with_header('Transfer-Encoding: "chunked"\r\n', "POST") + "0\r\n\r\n", 400),
    refused("te-with-parameter", with_header("Transfer-Encoding: chunked;q=1\r\n", "POST") + "0\r\n\r\n",
            400, 501),
    refused("te-empty-list-element", with_header("Transfer-Encoding: , chunked\r\n", "POST") + "0\r\n\r\n",
            400, 501),
    refused("te-space-before-colon", with_header("Transfer-Encoding : chunked\r\n", "POST") + "0\r\n\r\n", 400),
    refused("te-tab-before-colon", with_header("Transfer-Encoding\t: chunked\r\n", "POST") + "0\r\n\r\n", 400),
    refused("te-obs-fold", with_header("Transfer-Encoding:\r\n chunked\r\n", "POST") + "0\r\n\r\n", 400),
    refused("te-leading-whitespace-line", "POST /p/{m} HTTP/1.1\r\n Transfer-Encoding: chunked\r\n" + H + "\r\n"
            "0\r\n\r\n", 400),
    refused("te-vertical-tab", with_header("Transfer-Encoding:\x0bchunked\r\n", "POST") + "0\r\n\r\n", 400),
    refused("te-form-feed", with_header("Transfer-Encoding: chunked\x0c\r\n", "POST") + "0\r\n\r\n", 400),
    refused("te-nul", with_header("Transfer-Encoding: chunked\x00\r\n", "POST") + "0\r\n\r\n", 400),
    refused("te-http10", "POST /p/{m} HTTP/1.0\r\n" + H + "Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
            400),
    refused("te-http10-with-cl", "POST /p/{m} HTTP/1.0\r\n" + H + "Transfer-Encoding: chunked\r\nContent-Length: 5"
            "\r\n\r\nhello", 400),
    accepted("te-upper-case", "POST /p/{m} HTTP/1.1\r\n" + H + "TRANSFER-ENCODING: CHUNKED\r\n\r\n"
             "5\r\nhello\r\n0\r\n\r\n", HELLO),
    accepted("te-surrounding-spaces", chunked_post("5\r\nhello\r\n0\r\n\r\n").replace(
        "Transfer-Encoding: chunked", "Transfer-Encoding:   chunked "), HELLO),
    # OWS may be a tab, but httptools refuses one after the value: refusing is the safe side
    accepted_or_refused("te-surrounding-tabs", chunked_post("5\r\nhello\r\n0\r\n\r\n").replace(
        "Transfer-Encoding: chunked", "Transfer-Encoding: \t chunked \t"), HELLO),
    accepted("te-underscore-is-another-field", with_header("Transfer_Encoding: chunked\r\n"),
             get("/p/{m}")),
]

CHUNKS = [
    # chunk-size
    accepted("chunk-size-leading-zeros", chunked_post("0005\r\nhello\r\n0\r\n\r\n"), HELLO),
    accepted("chunk-size-upper-hex", chunked_post("A\r\nhelloworld\r\n0\r\n\r\n"), post("/p/{m}", "helloworld")),
    accepted("last-chunk-zeros", chunked_post("5\r\nhello\r\n000\r\n\r\n"), HELLO),
    refused("chunk-size-16-digits", chunked_post("0000000000000005\r\nhello\r\n0\r\n\r\n"), 400),
    refused("chunk-size-15-f-over-limit", chunked_post("fffffffffffffff\r\nhello\r\n0\r\n\r\n"), 413),
    refused("chunk-size-16-f", chunked_post("ffffffffffffffff\r\nhello\r\n0\r\n\r\n"), 400, 413),
    refused("chunk-size-overflow-to-5", chunked_post("10000000000000005\r\nhello\r\n0\r\n\r\n"), 400, 413),
    refused("chunk-size-over-max-body-size", chunked_post("200000\r\nhello"), 413),
    refused("chunk-size-0x", chunked_post("0x5\r\nhello\r\n0\r\n\r\n"), 400),
    refused("chunk-size-negative", chunked_post("-5\r\nhello\r\n0\r\n\r\n"), 400),
    refused("chunk-size-plus", chunked_post("+5\r\nhello\r\n0\r\n\r\n"), 400),
    refused("chunk-size-leading-space", chunked_post(" 5\r\nhello\r\n0\r\n\r\n"), 400),
    refused("chunk-size-trailing-space", chunked_post("5 \r\nhello\r\n0\r\n\r\n"), 400),
    refused("chunk-size-not-hex", chunked_post("5g\r\nhello\r\n0\r\n\r\n"), 400),
    refused("chunk-size-empty", chunked_post("\r\nhello\r\n0\r\n\r\n"), 400),
    refused("chunk-data-longer-than-size", chunked_post("5\r\nhelloworld\r\n0\r\n\r\n"), 400),
    refused("chunk-data-shorter-than-size", chunked_post("5\r\nhell\r\n0\r\n\r\n"), 400),
    refused("chunk-data-without-crlf", chunked_post("5\r\nhello0\r\n\r\n"), 400),
    refused("last-chunk-missing", chunked_post("5\r\nhello\r\n"), 400),
    # chunk extensions (RFC 9112 7.1.1)
    accepted("chunk-ext-token", chunked_post("5;a=b\r\nhello\r\n0\r\n\r\n"), HELLO),
    accepted("chunk-ext-quoted-semicolon", chunked_post('5;a="x;y"\r\nhello\r\n0\r\n\r\n'), HELLO),
    accepted("chunk-ext-list", chunked_post("5;a=b;c\r\nhello\r\n0\r\n\r\n"), HELLO),
    accepted("chunk-ext-bws", chunked_post("5 ; a = b\r\nhello\r\n0\r\n\r\n"), HELLO),
    accepted("chunk-ext-tab-bws", chunked_post("5\t;a=b\r\nhello\r\n0\r\n\r\n"), HELLO),
    accepted("chunk-ext-quoted-pair", chunked_post('5;a="q\\"x"\r\nhello\r\n0\r\n\r\n'), HELLO),
    accepted("chunk-ext-on-last-chunk", chunked_post("5\r\nhello\r\n0;a=b\r\n\r\n"), HELLO),
    refused("chunk-ext-semicolon-only", chunked_post("5;\r\nhello\r\n0\r\n\r\n"), 400),
    refused("chunk-ext-empty-name", chunked_post("5;=\r\nhello\r\n0\r\n\r\n"), 400),
    refused("chunk-ext-semicolons", chunked_post("5;;;\r\nhello\r\n0\r\n\r\n"), 400),
    refused("chunk-ext-unterminated-quote", chunked_post('5;a="b\r\nhello\r\n0\r\n\r\n'), 400),
    refused("chunk-ext-bad-token", chunked_post("5;a(b)=c\r\nhello\r\n0\r\n\r\n"), 400),
    refused("chunk-ext-high-byte", chunked_post("5;a=\xff\r\nhello\r\n0\r\n\r\n"), 400),
    refused("chunk-ext-nul", chunked_post("5;a=\x00\r\nhello\r\n0\r\n\r\n"), 400),
    refused("chunk-ext-empty-value", chunked_post("5;a=\r\nhello\r\n0\r\n\r\n"), 400),
    refused("chunk-ext-two-equals", chunked_post("5;a=b=c\r\nhello\r\n0\r\n\r\n"), 400),
    refused("chunk-ext-space-in-value", chunked_post("5;a=b c\r\nhello\r\n0\r\n\r\n"), 400),
    # trailers
    accepted("trailer-plain-is-dropped", chunked_post("5\r\nhello\r\n0\r\nX-Trailer: t\r\n\r\n"),
             post("/p/{m}", "hello", absent=("x-trailer",))),
    accepted("trailer-announced",
             chunked_post("5\r\nhello\r\n0\r\nX-Trailer: t\r\n\r\n", extra="Trailer: X-Trailer\r\n"),
             post("/p/{m}", "hello", absent=("x-trailer",))),
    *(refused(f"trailer-{name.lower()}", chunked_post(f"5\r\nhello\r\n0\r\n{name}: {value}\r\n\r\n"), 400)
      for name, value in [("Content-Length", "5"), ("Transfer-Encoding", "chunked"), ("Host", "evil.test"),
                          ("Connection", "close"), ("Trailer", "X"), ("TE", "trailers"), ("Upgrade", "h2c"),
                          ("Expect", "100-continue"), ("Authorization", "Basic YTpi"), ("Cookie", "a=b"),
                          ("Content-Type", "text/evil"), ("Content-Encoding", "gzip"),
                          ("Content-Range", "bytes 0-4/5"), ("X-Forwarded-For", "10.0.0.1"),
                          ("X-Forwarded-Host", "evil.test")]),
    refused("trailer-upper-case-content-length", chunked_post("5\r\nhello\r\n0\r\nCONTENT-LENGTH: 5\r\n\r\n"), 400),
    refused("trailer-obs-fold", chunked_post("5\r\nhello\r\n0\r\nX-T: a\r\n b\r\n\r\n"), 400),
    refused("trailer-without-colon", chunked_post("5\r\nhello\r\n0\r\nX-T\r\n\r\n"), 400),
    refused("trailer-space-before-colon", chunked_post("5\r\nhello\r\n0\r\nX-T : a\r\n\r\n"), 400),
    refused("trailer-nul", chunked_post("5\r\nhello\r\n0\r\nX-T: a\x00\r\n\r\n"), 400),
]

LINES = [
    # bare CR / bare LF / NUL / obs-fold / whitespace around field names
    refused("bare-lf-request-line", "GET /p/{m} HTTP/1.1\n" + H + "\r\n", 400),
    refused("bare-lf-field", "GET /p/{m} HTTP/1.1\r\nHost: gw.test\nX-A: b\r\n\r\n", 400),
    refused("bare-lf-head-end", "GET /p/{m} HTTP/1.1\r\n" + H + "\n", 400),
    refused("bare-cr-field-value", with_header("X-A: a\rb\r\n"), 400),
    refused("bare-cr-line-end", "GET /p/{m} HTTP/1.1\r\nHost: gw.test\rX-A: b\r\n\r\n", 400),
    refused("bare-lf-chunk-size", chunked_post("5\nhello\r\n0\r\n\r\n"), 400),
    refused("bare-lf-after-chunk-data", chunked_post("5\r\nhello\n0\r\n\r\n"), 400),
    refused("bare-cr-after-chunk-data", chunked_post("5\r\nhello\r0\r\n\r\n"), 400),
    refused("bare-lf-last-chunk", chunked_post("5\r\nhello\r\n0\n\r\n"), 400),
    refused("bare-lf-chunked-body-end", chunked_post("5\r\nhello\r\n0\r\n\n"), 400),
    refused("bare-lf-trailer", chunked_post("5\r\nhello\r\n0\r\nX-T: a\n\r\n"), 400),
    refused("nul-in-target", target("/p/{m}\x00x"), 400),
    refused("nul-in-field-name", with_header("X-\x00A: b\r\n"), 400),
    refused("nul-in-field-value", with_header("X-A: a\x00b\r\n"), 400),
    refused("del-in-field-value", with_header("X-A: a\x7fb\r\n"), 400),
    refused("field-without-colon", with_header("X-A\r\n"), 400),
    refused("field-empty-name", with_header(": b\r\n"), 400),
    refused("field-name-not-token", with_header("X[A]: b\r\n"), 400),
    refused("field-space-before-colon", with_header("X-A : b\r\n"), 400),
    refused("field-obs-fold", with_header("X-A: a\r\n\tb\r\n"), 400),
    refused("field-leading-whitespace", "GET /p/{m} HTTP/1.1\r\n X-A: b\r\n" + H + "\r\n", 400),
    # the request line (RFC 9112 3)
    refused("two-spaces-after-method", "GET  /p/{m} HTTP/1.1\r\n" + H + "\r\n", 400),
    refused("two-spaces-before-version", "GET /p/{m}  HTTP/1.1\r\n" + H + "\r\n", 400),
    refused("space-after-version", "GET /p/{m} HTTP/1.1 \r\n" + H + "\r\n", 400),
    refused("tab-separator", "GET\t/p/{m} HTTP/1.1\r\n" + H + "\r\n", 400),
    refused("leading-space", " GET /p/{m} HTTP/1.1\r\n" + H + "\r\n", 400),
    accepted("empty-lines-before-request-line", "\r\n\r\nGET /p/{m} HTTP/1.1\r\n" + H + "\r\n", get("/p/{m}")),
    refused("bare-cr-before-request-line", "\r\n\rGET /p/{m} HTTP/1.1\r\n" + H + "\r\n", 400),
    refused("bare-lf-before-request-line", "\nGET /p/{m} HTTP/1.1\r\n" + H + "\r\n", 400),
    refused("method-not-token", "GE/T /p/{m} HTTP/1.1\r\n" + H + "\r\n", 400),
    refused("version-missing", "GET /p/{m}\r\n" + H + "\r\n", 400, 505),  # httptools takes it for HTTP/0.9
    refused("version-lower-case", "GET /p/{m} http/1.1\r\n" + H + "\r\n", 400),
    refused("version-without-minor", "GET /p/{m} HTTP/1\r\n" + H + "\r\n", 400),
    refused("version-2", "GET /p/{m} HTTP/2.0\r\n" + H + "\r\n", 505),
    refused("version-3", "GET /p/{m} HTTP/3.0\r\n" + H + "\r\n", 400, 505),
    refused("version-1-2", "GET /p/{m} HTTP/1.2\r\n" + H + "\r\n", 400, 505),
    refused("version-0-9", "GET /p/{m} HTTP/0.9\r\n" + H + "\r\n", 400, 505),
    refused("version-1-10", "GET /p/{m} HTTP/1.10\r\n" + H + "\r\n", 400, 505),
    refused("h2-prior-knowledge-preface", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 400, 505),
    refused("connect", "CONNECT gw.test:443 HTTP/1.1\r\nHost: gw.test:443\r\nX-Marker: {m}\r\n\r\n", 405),
    refused("request-line-too-long", target("/p/{m}?" + "a" * 3000), 414),
    refused("field-too-large", with_header("X-Big: " + "b" * 9000 + "\r\n"), 431),
    refused("too-many-fields", with_header("".join(f"X-N{i}: v\r\n" for i in range(60))), 431),
]

TARGETS = [
    # target forms (RFC 9112 3.2)
    accepted("absolute-form", target("http://gw.test/p/{m}?q=1"), get("/p/{m}?q=1")),
    accepted("absolute-form-https", target("https://gw.test/p/{m}"), get("/p/{m}")),
    accepted("absolute-form-host-case", target("http://GW.TEST/p/{m}"), get("/p/{m}")),
    accepted("absolute-form-empty-path", target("http://gw.test?m={m}"), get("/?m={m}")),
    accepted("absolute-form-with-port", target("http://gw.test:8080/p/{m}", host="gw.test:8080"),
             get("/p/{m}", host="gw.test:8080")),
    refused("absolute-form-other-host", target("http://evil.test/p/{m}"), 400),
    refused("absolute-form-other-port", target("http://gw.test:8080/p/{m}"), 400),
    refused("absolute-form-userinfo", target("http://user@gw.test/p/{m}"), 400),
    refused("absolute-form-userinfo-names-host", target("http://gw.test@evil.test/p/{m}"), 400),
    refused("absolute-form-other-scheme", target("ftp://gw.test/p/{m}"), 400),
    refused("absolute-form-one-slash", target("http:/gw.test/p/{m}"), 400),
    refused("absolute-form-fragment", target("http://gw.test/p/{m}#f"), 400),
    refused("absolute-form-without-host-field", "GET http://gw.test/p/{m} HTTP/1.1\r\n\r\n", 400),
    refused("relative-target", target("p/{m}"), 400),
    refused("query-only-target", target("?{m}"), 400),
    refused("asterisk-with-get", "GET * HTTP/1.1\r\n" + H + "X-Marker: {m}\r\n\r\n", 400),
    # target syntax (RFC 3986 path characters)
    refused("fragment", target("/p/{m}#x"), 400),
    refused("fragment-in-query", target("/p/{m}?a#b"), 400),
    refused("backslash", target("/p/{m}\\x"), 400),
    refused("pct-not-hex", target("/p/{m}%zz"), 400),
    refused("pct-truncated", target("/p/{m}%4"), 400),
    refused("pct-at-end", target("/p/{m}%"), 400),
    refused("high-byte", target("/p/{m}\xc3\xa9"), 400),
    refused("del-byte", target("/p/{m}\x7f"), 400),
    *(refused(f"path-char-{name}", target("/p/{m}" + char + "x"), 400)
      for name, char in [("lt", "<"), ("gt", ">"), ("dquote", '"'), ("lbrace", "{"), ("pipe", "|"),
                         ("caret", "^"), ("backtick", "`")]),
    accepted("query-any-vchar", target('/p/{m}?a=<b>|{c}"^`[]'), get('/p/{m}?a=<b>|{c}"^`[]')),
    # path normalisation: what the upstream receives
    refused("pct-slash", target("/p/{m}%2Fx"), 400),
    refused("pct-slash-lower", target("/p/{m}%2fx"), 400),
    refused("pct-backslash", target("/p/{m}%5Cx"), 400),
    refused("pct-backslash-lower", target("/p/{m}%5cx"), 400),
    refused("pct-nul", target("/p/{m}%00"), 400),
    refused("dot-dot-above-root", target("/../p/{m}"), 400),
    refused("pct-dot-dot-above-root", target("/%2e%2e/p/{m}"), 400),
    refused("dot-dot-twice-above-root", target("/p/../../{m}"), 400),
    refused("dot-dot-alone", target("/..?{m}"), 400),
    accepted("dot-segment", target("/p/./{m}"), get("/p/{m}")),
    accepted("dot-dot-segment", target("/p/x/../{m}"), get("/p/{m}")),
    accepted("pct-dot-segment", target("/p/%2e/{m}"), get("/p/{m}")),
    accepted("pct-dot-dot-segment", target("/p/x/%2e%2e/{m}"), get("/p/{m}")),
    accepted("pct-dot-dot-upper", target("/p/x/%2E%2E/{m}"), get("/p/{m}")),
    accepted("mixed-dot-dot", target("/p/x/.%2e/{m}"), get("/p/{m}")),
    accepted("trailing-dot", target("/p/{m}/."), get("/p/{m}/")),
    accepted("trailing-dot-dot", target("/p/{m}/x/.."), get("/p/{m}/")),
    accepted("double-slash", target("/p//{m}"), get("/p/{m}")),
    accepted("leading-slashes", target("///p/{m}"), get("/p/{m}")),
    accepted("network-path-is-a-path", target("//gw.test/p/{m}"), get("/gw.test/p/{m}")),
    accepted("pct-unreserved-decoded", target("/p/%7e%41%5a%2d%5f%2E{m}"), get("/p/~AZ-_.{m}")),
    accepted("pct-reserved-upper-cased", target("/p/%3a%40%e2%82%ac{m}"), get("/p/%3A%40%E2%82%AC{m}")),
    accepted("query-not-normalised", target("/p/./{m}?a=/../b&c=%2e%2E%2f%zz"), get("/p/{m}?a=/../b&c=%2e%2E%2f%zz")),
    accepted("dots-inside-segment", target("/p/a..b/.../{m}"), get("/p/a..b/.../{m}")),
    accepted("sub-delims-kept", target("/p/{m};a=b,c!$&'()*+"), get("/p/{m};a=b,c!$&'()*+")),
    refused("pct-newline", target("/internal%0a?{m}"), 400),  # "^/internal$" would match the decoded path
    refused("pct-carriage-return", target("/admin%0d?{m}"), 400),
    refused("pct-del", target("/admin%7f?{m}"), 400),
]

BYPASS = [
    # each must hit a deny route, never the upstream
    denied("admin", target("/admin/{m}")),
    denied("admin-exact", target("/admin?{m}")),
    denied("admin-head", "HEAD /admin/{m} HTTP/1.1\r\n" + H + "\r\n"),
    denied("admin-double-slash", target("//admin/{m}")),
    denied("admin-triple-slash", target("///admin/{m}")),
    denied("admin-pct-a", target("/%61dmin/{m}")),
    denied("admin-pct-all", target("/%61%64%6D%69%6E/{m}")),
    denied("admin-dot-dot", target("/x/../admin/{m}")),
    denied("admin-leading-dot", target("/./admin/{m}")),
    denied("admin-dot-after", target("/admin/./{m}")),
    denied("admin-pct-dot-dot", target("/x/%2e%2e/admin/{m}")),
    denied("admin-mixed", target("/x/.%2E/%61dmin/{m}")),
    denied("admin-dot-dot-double-slash", target("/p/..//admin/{m}")),
    denied("admin-absolute-form", target("http://gw.test/admin/{m}")),
    denied("admin-absolute-form-double-slash", target("http://gw.test//admin/{m}")),
    denied("admin-absolute-form-pct", target("http://gw.test/%61dmin/{m}")),
    denied("internal", target("/internal?{m}")),
    denied("internal-pct", target("/intern%61l?{m}")),
    denied("internal-leading-dot", target("/./internal?{m}")),
    denied("internal-double-slash", target("//internal?{m}")),
    denied("internal-dot-dot", target("/x/../internal?{m}")),
    denied("host", with_host("secret.test")),
    denied("host-upper-case", with_host("SECRET.TEST")),
    denied("host-absolute-form", target("http://secret.test/p/{m}", host="secret.test")),
    denied("host-absolute-form-case", target("http://SECRET.test/p/{m}", host="secret.TEST")),
    refused("host-absolute-form-disagrees", target("http://gw.test/p/{m}", host="secret.test"), 400),
    refused("host-absolute-form-disagrees-other-way", target("http://secret.test/p/{m}"), 400),
    # a deny route must not leave a body behind to be read as the next request (CL.0, TE.0, 0.CL)
    denied("cl0-body-on-deny-route", "POST /admin/{m} HTTP/1.1\r\n" + H + f"Content-Length: {flen(SMUGGLED)}"
           "\r\n\r\n" + SMUGGLED, after=EITHER),
    denied("cl0-get-body-on-deny-route", "GET /admin/{m} HTTP/1.1\r\n" + H + f"Content-Length: {flen(SMUGGLED)}"
           "\r\n\r\n" + SMUGGLED, after=EITHER),
    denied("te0-chunked-body-on-deny-route", "POST /admin/{m} HTTP/1.1\r\n" + H + "Transfer-Encoding: chunked\r\n\r\n"
           f"{flen(SMUGGLED):x}\r\n" + SMUGGLED + "\r\n0\r\n\r\n", after=EITHER),
    denied("expect-body-on-deny-route", "POST /admin/{m} HTTP/1.1\r\n" + H + "Expect: 100-continue\r\n"
           f"Content-Length: {flen(SMUGGLED)}\r\n\r\n" + SMUGGLED, after=EITHER),
    # bodies that hold a request are data (0.CL, TE.0)
    accepted("request-in-cl-body", cl_post(str(flen(SMUGGLED)), SMUGGLED), post("/p/{m}", SMUGGLED)),
    accepted("request-in-get-body", "GET /p/{m} HTTP/1.1\r\n" + H + f"Content-Length: {flen(SMUGGLED)}\r\n\r\n"
             + SMUGGLED, get("/p/{m}", body=SMUGGLED)),
    accepted("request-in-chunked-options-body", "OPTIONS /p/{m} HTTP/1.1\r\n" + H + "Transfer-Encoding: chunked\r\n\r\n"
             f"{flen(SMUGGLED):x}\r\n" + SMUGGLED + "\r\n0\r\n\r\n", Fwd("OPTIONS", "/p/{m}", SMUGGLED)),
    accepted("last-chunk-in-chunk-data", chunked_post("a\r\n0\r\n\r\nGET /\r\n0\r\n\r\n"),
             post("/p/{m}", "0\r\n\r\nGET /")),
]

HOSTS = [
    # Host (RFC 9110 7.2, RFC 3986 uri-host)
    refused("host-missing", "GET /p/{m} HTTP/1.1\r\n\r\n", 400),
    refused("host-twice-equal", "GET /p/{m} HTTP/1.1\r\n" + H + H + "\r\n", 400),
    refused("host-twice-different", "GET /p/{m} HTTP/1.1\r\n" + H + "Host: secret.test\r\n\r\n", 400),
    refused("host-twice-case", "GET /p/{m} HTTP/1.1\r\n" + H + "host: gw.test\r\n\r\n", 400),
    *(refused(f"host-{name}", with_host(value), 400) for name, value in [
        ("userinfo", "a@gw.test"), ("space", "gw.test evil"), ("comma", "gw.test,evil.test"),
        ("slash", "gw.test/evil"), ("port-too-big", "gw.test:99999"), ("port-65536", "gw.test:65536"),
        ("port-6-digits", "gw.test:000080"), ("port-not-numeric", "gw.test:http"), ("port-sign", "gw.test:+80"),
        ("percent", "gw%2etest"), ("ipv6-unclosed", "[::1"), ("ipv6-bare", "::1"), ("two-ports", "gw.test:80:80"),
        ("semicolon", "gw.test;evil"), ("tab-inside", "gw\ttest"), ("quoted", '"gw.test"'),
        ("backslash", "gw.test\\evil"), ("question-mark", "gw.test?x"), ("hash", "gw.test#x")]),
    accepted_or_refused("host-empty-port", with_host("gw.test:"), get("/p/{m}", host=None)),
    accepted("host-with-port", with_host("gw.test:8080"), get("/p/{m}", host="gw.test:8080")),
    accepted("host-ipv6", with_host("[::1]"), get("/p/{m}", host="[::1]")),
    accepted("host-ipv6-port", with_host("[::1]:8080"), get("/p/{m}", host="[::1]:8080")),
    accepted("host-underscore", with_host("my_host.test"), get("/p/{m}", host="my_host.test")),
    accepted("host-trailing-whitespace", with_host("gw.test \t"), get("/p/{m}")),
    accepted("x-forwarded-host-is-replaced", with_header("X-Forwarded-Host: secret.test\r\n"), get("/p/{m}")),
    # Connection (RFC 9110 7.6.1)
    refused("connection-names-content-length", cl_post("5", extra="Connection: Content-Length\r\n"), 400),
    refused("connection-names-transfer-encoding",
            chunked_post("5\r\nhello\r\n0\r\n\r\n", extra="Connection: transfer-encoding\r\n"), 400),
    refused("connection-names-host", with_header("Connection: host\r\n"), 400),
    refused("connection-list-names-host", with_header("Connection: keep-alive, Host\r\n"), 400),
    accepted("connection-names-other-field", with_header("Connection: X-Foo\r\nX-Foo: secret\r\n"),
             get("/p/{m}", absent=("x-foo",))),
    accepted("connection-close", with_header("Connection: close\r\n"), get("/p/{m}"), after=CLOSED),
    accepted("http10-closes", "GET /p/{m} HTTP/1.0\r\n\r\n", get("/p/{m}", host=None), after=CLOSED),
    accepted("http10-with-body", "POST /p/{m} HTTP/1.0\r\nContent-Length: 5\r\n\r\nhello",
             post("/p/{m}", "hello", host=None), after=CLOSED),
    # Upgrade (RFC 9110 7.8) and h2c smuggling
    accepted("h2c-upgrade-served-plain", with_header("Upgrade: h2c\r\nConnection: Upgrade, HTTP2-Settings\r\n"
                                                     "HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n"),
             get("/p/{m}")),
    accepted("upgrade-without-connection", with_header("Upgrade: h2c\r\n"), get("/p/{m}")),
    refused("websocket-upgrade-with-body", cl_post("5", extra="Connection: Upgrade\r\nUpgrade: websocket\r\n"), 400),
    refused("websocket-upgrade-chunked", chunked_post("5\r\nhello\r\n0\r\n\r\n",
                                                      extra="Connection: Upgrade\r\nUpgrade: websocket\r\n"), 400),
    pytest.param(Case(target("/p/{m}-answer101"), {502: ((get("/p/{m}-answer101"),), EITHER)}),
                 id="upstream-101-unasked"),
    pytest.param(Case(with_header("Upgrade: h2c\r\nConnection: Upgrade, HTTP2-Settings\r\nHTTP2-Settings: AAMAAABk"
                                  "\r\n", target="/p/{m}-answer101"),
                      {502: ((get("/p/{m}-answer101"),), EITHER)}), id="h2c-upstream-101"),
    # Expect (RFC 9110 10.1.1)
    refused("expect-unknown", with_header("Expect: 100-continuex\r\n"), 417),
    refused("expect-other", with_header("Expect: foo\r\n"), 417),
    refused("expect-obfuscated", cl_post("5", extra="Expect: y 100-continue\r\n"), 417),
    refused("expect-obs-fold", cl_post("5", extra="Expect:\r\n 100-continue\r\n"), 400),
    refused("expect-space-before-colon", cl_post("5", extra="Expect : 100-continue\r\n"), 400),
    accepted("expect-upper-case-with-body", cl_post("5", extra="Expect: 100-Continue\r\n"), HELLO),
]

def second(case_id: str, raw: str, outcomes: dict, before: tuple[str, str] = ("GET", "")) -> object:
    return pytest.param(Case(raw, outcomes, before=before), id=case_id)


REFUSE_400 = {400: ((), CLOSED)}
SECOND = [
    # the same rules for a request that follows an exchange on the connection (a reused parser)
    second("2nd-two-spaces", "GET  /p/{m} HTTP/1.1\r\n" + H + "\r\n", REFUSE_400),
    second("2nd-te-chunked-not-last", with_header("Transfer-Encoding: chunked, gzip\r\n", "POST") + "0\r\n\r\n",
           REFUSE_400),
    second("2nd-cl-duplicate", cl_post("5", extra="Content-Length: 5\r\n"), REFUSE_400, ("POST", "hello")),
    second("2nd-chunk-ext-bad", chunked_post("5;a(b)=c\r\nhello\r\n0\r\n\r\n"), REFUSE_400, ("CHUNKED", "hello")),
    second("2nd-trailer-host", chunked_post("5\r\nhello\r\n0\r\nHost: evil.test\r\n\r\n"), REFUSE_400,
           ("CHUNKED", "hello")),
    second("2nd-host-userinfo", with_host("a@gw.test"), REFUSE_400),
    second("2nd-pct-slash", target("/p/{m}%2Fx"), REFUSE_400, ("POST", "hello")),
    second("2nd-bare-lf", "GET /p/{m} HTTP/1.1\r\nHost: gw.test\nX-A: b\r\n\r\n", REFUSE_400),
    second("2nd-garbage-before-method", "XGET /p/{m} HTTP/1.1\r\n" + H + "\r\n", REFUSE_400),
    second("2nd-version-2", "GET /p/{m} HTTP/2.0\r\n" + H + "\r\n", {505: ((), CLOSED)}),
    second("2nd-admin-double-slash", target("//admin/{m}"), {403: ((), SERVED)}),
    second("2nd-chunked-accepted", chunked_post("5;a=b\r\nhello\r\n0\r\nX-T: 1\r\n\r\n"),
           {200: ((HELLO,), SERVED)}, ("CHUNKED", "hello")),
    second("2nd-normalised", target("/p/x/%2e%2e/{m}"), {200: ((get("/p/{m}"),), SERVED)}, ("POST", "hello")),
]

CASES = [*FRAMING, *CHUNKS, *LINES, *TARGETS, *BYPASS, *HOSTS, *SECOND]


# -- running a case ----------------------------------------------------------------------------


def fill(text: str, m: str) -> str:
    return text.replace("{m}", m)


def new_marker() -> str:
    marker = "m" + uuid.uuid4().hex[:12]
    assert len(marker) == MARKER_LEN
    return marker


def check_forwarded(got: ParsedRequest, want: Fwd, m: str) -> None:
    where = f"upstream got {got.summary()}"
    assert (got.method, got.target, got.http_version) == (want.method, fill(want.target, m), "1.1"), where
    body = fill(want.body, m).encode("latin-1")
    assert got.body == body, f"{where}: body {got.body[:200]!r}, expected {body[:200]!r}"
    lengths = [int(v) for v in got.header_all("content-length")]
    assert lengths == [len(body)] or (not body and lengths in ([], [0])), f"{where}: Content-Length {lengths}"
    for name in (*HOP_BY_HOP, *want.absent):
        assert got.header_all(name) == [], f"{where}: {name} must not be forwarded"
    tokens = {t.strip().lower() for v in got.header_all("connection") for t in v.split(b",")}
    assert tokens <= {b"keep-alive", b"close"}, f"{where}: Connection {tokens}"
    if want.host is not None:
        assert got.header_all("host") == [want.host.encode()], f"{where}: Host {got.header_all('host')}"
        assert got.header_all("x-forwarded-host") == [want.host.encode()], \
            f"{where}: X-Forwarded-Host {got.header_all('x-forwarded-host')}"


def sentinel(gw, raw_up: RawUpstream) -> ParsedRequest:
    """A fresh request through the gateway: once it is answered, the gateway is done with the case."""
    path = f"/p/s{uuid.uuid4().hex[:12]}"
    with RawConnection(gw.port, timeout_s=CLIENT_TIMEOUT_S) as conn:
        conn.send(target(path).encode())
        response = conn.read_response()
    assert (response.status, response.body) == (200, FIXED_BODY), "the gateway stopped serving"
    got = raw_up.requests_with(path)
    assert len(got) == 1, got
    return got[0]


def first_answer(conn: RawConnection, method: str) -> Response:
    try:
        return conn.read_response(method)
    except (ConnectionError, h11.RemoteProtocolError):
        raise AssertionError("the gateway closed the connection without answering") from None


def check_pipelined_not_answered(conn: RawConnection) -> None:
    rest = conn.wait_closed()
    assert b"HTTP/1." not in rest, f"something behind a refused request was answered: {rest[:200]!r}"


def before_request(method: str, body: str, path: str) -> tuple[bytes, Fwd]:
    """A well-formed request sent ahead of a case, and what the upstream must get of it."""
    if method == "GET":
        return target(path).encode(), get(path)
    if method == "CHUNKED":
        raw = f"POST {path} HTTP/1.1\r\n{H}Transfer-Encoding: chunked\r\n\r\n{len(body):x}\r\n{body}\r\n0\r\n\r\n"
        return raw.encode(), post(path, body)
    return f"{method} {path} HTTP/1.1\r\n{H}Content-Length: {len(body)}\r\n\r\n{body}".encode(), Fwd(method, path, body)


def run_case(gw, raw_up: RawUpstream, case: Case) -> None:
    m = new_marker()
    p = "q" + uuid.uuid4().hex[:12]
    attack = fill(case.raw, m).encode("latin-1")
    pipelined = target(f"/p/{p}").encode()
    method = attack.split(b" ", 1)[0].decode("latin-1") if attack.startswith(b"HEAD ") else "GET"
    first, first_fwd = before_request(*case.before, f"/p/f{uuid.uuid4().hex[:12]}") if case.before else (b"", None)
    mark = raw_up.mark()
    with RawConnection(gw.port, timeout_s=CLIENT_TIMEOUT_S) as conn:
        conn.send(first + attack + pipelined)
        if first:
            response = first_answer(conn, "GET")
            assert (response.status, response.body) == (200, FIXED_BODY), response
        response = first_answer(conn, method)
        assert response.status in case.outcomes, \
            f"expected {sorted(case.outcomes)}, got {response.status}: {response.body[:300]!r}"
        forwarded, after = case.outcomes[response.status]
        if response.status == 403:
            assert response.body == (b"" if method == "HEAD" else DENIED), response.body[:300]
        elif response.status >= 400:
            assert_json_error(response, response.status)
        else:
            assert response.body == (b"" if method == "HEAD" else FIXED_BODY), response.body[:300]
        served = False
        if after == CLOSED:
            check_pipelined_not_answered(conn)
        else:
            try:
                second = conn.read_response()
                served = True
            except (ConnectionError, h11.RemoteProtocolError):  # closed (h11: before a response)
                assert after == EITHER, "the gateway closed the connection instead of serving the next request"
            if served:
                assert (second.status, second.body) == (200, FIXED_BODY), second
    if not forwarded:
        REFUSED_MARKERS.append(m)
    last = sentinel(gw, raw_up)

    got = raw_up.requests_since(mark)
    assert got and got[-1].target == last.target, [r.summary() for r in got]
    got = got[:-1]
    expected = ([first_fwd] if first_fwd else []) + list(forwarded) + ([get(f"/p/{p}")] if served else [])
    assert [(r.method, r.target) for r in got] == [(w.method, fill(w.target, m)) for w in expected], \
        f"upstream received {[r.summary() for r in got]}"
    for request, want in zip(got, expected):
        check_forwarded(request, want, m)
    assert raw_up.errors_since(mark) == [], "the upstream received malformed HTTP"
    new_bytes = raw_up.bytes_since(mark)
    assert sum(map(len, new_bytes.values())) == sum(len(r.raw) for r in (*got, last)), \
        f"the upstream received bytes beyond the expected requests: {new_bytes!r}"[:2000]


@pytest.mark.parametrize("case", CASES)
def test_request(gw, raw_up, case):
    run_case(gw, raw_up, case)


def test_expect_100_continue_gets_an_interim_answer_before_the_body(gw, raw_up):
    m = new_marker()
    with RawConnection(gw.port, timeout_s=CLIENT_TIMEOUT_S) as conn:
        conn.send(fill(with_header("Expect: 100-continue\r\nContent-Length: 5\r\n", "POST"), m).encode())
        interim = conn.read_interim()
        assert interim.status == 100
        conn.send(b"hello")
        conn.finish_request_for_parser()
        response = conn.read_response("POST")
    assert (response.status, response.body) == (200, FIXED_BODY)
    sentinel(gw, raw_up)
    (got,) = raw_up.requests_with(m)
    check_forwarded(got, HELLO, m)


def test_options_asterisk_is_not_refused(gw, raw_up):
    m = new_marker()
    mark = raw_up.mark()
    with RawConnection(gw.port, timeout_s=CLIENT_TIMEOUT_S) as conn:
        conn.send(b"OPTIONS * HTTP/1.1\r\nHost: gw.test\r\n\r\n" + target(f"/p/{m}").encode())
        response = conn.read_response("OPTIONS")
        assert response.status < 400 or response.status == 404, response
        second = conn.read_response()
        assert (second.status, second.body) == (200, FIXED_BODY)
    got = [r.summary() for r in raw_up.requests_since(mark)]
    assert got in ([f"GET /p/{m} HTTP/1.1 (none, 0 bytes)"],
                   ["OPTIONS * HTTP/1.1 (none, 0 bytes)", f"GET /p/{m} HTTP/1.1 (none, 0 bytes)"]), got


def test_zz_nothing_refused_ever_reached_the_upstream(gw, raw_up):
    """Last: once the upstream is quiet, no byte of any refused case arrived, late or not."""
    raw_up.wait_quiet()
    assert raw_up.errors == []
    assert raw_up.leftovers() == {}
    leaked = {m: raw_up.raw_contains(m.encode()) for m in REFUSED_MARKERS}
    assert {m: conns for m, conns in leaked.items() if conns} == {}
