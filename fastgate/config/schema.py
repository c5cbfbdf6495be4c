"""The config file's schema: msgspec Structs, decoded from TOML, unknown keys refused.

Durations and sizes are written readably ("5s", "250ms", "16KiB") and decoded
into ``Duration`` (float seconds) and ``Size`` (int bytes); see units.py.
Field names carry no unit because the value does; the compiled runtime
objects (compile.py) carry the unit in their names (``_s``, ``_bytes``).
"""

from typing import Literal

import msgspec

from fastgate.config.units import Duration, Size
from fastgate.ratelimit.config import Limit, RateLimitSettings


class _Section(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Base of every table: a key that is not in the schema is an error."""


class Server(_Section):
    """The ``[server]`` table: the process model."""

    workers: int | Literal["auto"] = "auto"
    """Worker processes; "auto" starts one per CPU."""
    pid_file: str = "/tmp/fastgate.pid"
    """Where the master writes its PID; ``fastgate -s`` reads it."""
    drain_timeout: Duration = Duration(30.0)
    """On reload or graceful stop, how long old workers may finish in-flight requests."""
    error_log: str = "stderr"
    """Path of the error log, or "stderr"."""
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    """Lowest level written to the error log."""
    error_log_format: Literal["text", "json"] = "text"
    """"text": one readable line per event; "json": one JSON object per line with time (Unix
    seconds), level, pid, logger, message and, for an exception, its traceback in exception."""
    watch: bool = False
    """Reload by itself, as on SIGHUP, when the config file or a file it names (certificates, keys,
    CA files) changes: after 500ms without a further change, so an editor's save reloads once. A bad
    file is refused and logged like a bad SIGHUP reload; the running config goes on."""


class Http(_Section):
    """The ``[http]`` table: limits and timeouts on client connections (HTTP/1.1)."""

    max_request_line_size: Size = Size(8 * 1024)
    """Longest request line (method, target, version); longer gets 414."""
    max_header_size: Size = Size(32 * 1024)
    """Largest request head (request line and all headers); larger gets 431."""
    max_headers: int = 100
    """Most header fields in one request; more gets 431."""
    max_body_size: Size = Size(16 * 1024 * 1024)
    """Largest request body; larger gets 413. A route may set its own."""
    header_timeout: Duration = Duration(10.0)
    """Time to receive a whole request head once its first byte arrived; then 408."""
    keepalive_timeout: Duration = Duration(75.0)
    """How long an idle keep-alive client connection is kept open."""
    body_timeout: Duration = Duration(60.0)
    """Longest pause between two pieces of a request body; then the connection closes."""
    send_timeout: Duration = Duration(60.0)
    """Longest time a client may keep its receive window full before it is dropped."""
    request_buffer_size: Size = Size(64 * 1024)
    """Request bodies up to this size are read whole, and their framing checked, before a
    connection to the upstream is taken (like nginx's proxy_request_buffering); a chunked one
    goes upstream with a Content-Length. Larger bodies stream. A route may set its own, or
    switch buffering off (request_buffering)."""
    merge_slashes: bool = True
    """Runs of "/" in a path become one before routing, and the upstream gets the merged path."""
    encoded_slashes: Literal["reject", "keep"] = "reject"
    """An encoded "/" or "\\" (%2F, %5C) in a path: "reject" answers 400 (upstreams decode
    them differently, so a route could be bypassed); "keep" routes and forwards them encoded."""


class Http2(_Section):
    """The ``[http2]`` table: limits and abuse defences of HTTP/2 client connections (on every
    listener that serves HTTP/2). The sizes are announced to clients in SETTINGS and enforced.

    A client that abuses the protocol is told GOAWAY ENHANCE_YOUR_CALM and its connection is closed
    (its streams in flight are cut), counted in ``fastgate_http2_abuse_total`` by reason. Two
    allowances are kept per connection, each refilled steadily (its max over its window):
    streams the client resets while they are still in progress (rapid reset, CVE-2023-44487),
    and frames that carry no request forward (overhead frames: floods).
    """

    max_concurrent_streams: int = 128
    """Streams a client may have open at once (SETTINGS_MAX_CONCURRENT_STREAMS). A stream opened
    beyond it is refused (RST_STREAM REFUSED_STREAM: the client may send it again); each refusal
    counts as a reset against max_resets."""
    max_frame_size: Size = Size(16384)
    """Largest frame payload a client may send (SETTINGS_MAX_FRAME_SIZE), 16KiB to 16MiB-1; a larger
    frame is a connection error (FRAME_SIZE_ERROR). Response frames follow the client's own setting."""
    max_header_list_size: Size | None = None
    """Largest request header list (SETTINGS_MAX_HEADER_LIST_SIZE), counted as HPACK does: names,
    values and 32 bytes per field, decoded; default: [http].max_header_size. A header block whose
    frames (HEADERS and CONTINUATION) pass it before their end is cut unread, and one that decodes
    into more (an HPACK bomb): GOAWAY ENHANCE_YOUR_CALM. A list within it whose head exceeds
    [http].max_header_size still gets 431."""
    header_table_size: Size = Size(4096)
    """HPACK dynamic table the client may use to compress its requests (SETTINGS_HEADER_TABLE_SIZE);
    a header block that asks for a larger table is a connection error (COMPRESSION_ERROR)."""
    initial_window_size: Size = Size(65535)
    """Request body bytes a client may send on one stream before the gateway takes them
    (SETTINGS_INITIAL_WINDOW_SIZE); at most 2GiB-1."""
    connection_window_size: Size = Size(1024 * 1024)
    """... and over all its streams together (the connection's window); at least 64KiB-1, at most 2GiB-1."""
    response_buffer_size: Size = Size(1024 * 1024)
    """Response bytes held for one connection whose client does not take them (its windows closed, or
    its socket full), over all its streams. Past it, the upstreams of the streams that add more are
    paused until the client reads (back-pressure); a single stream is paused past 256KiB anyway."""
    max_resets: int = 256
    """Streams a client may reset (RST_STREAM) while their response is not complete, or open beyond
    max_concurrent_streams, within reset_window; one more: GOAWAY ENHANCE_YOUR_CALM (reason
    "rapid_reset"). The default lets a client cancel all of its streams twice at once."""
    reset_window: Duration = Duration(10.0)
    """The span max_resets is counted over (the allowance refills at max_resets per reset_window)."""
    max_overhead_frames: int = 1000
    """Frames that carry no request forward a client may send within overhead_window: SETTINGS, PING,
    PRIORITY, WINDOW_UPDATE, RST_STREAM, DATA without payload nor END_STREAM, frames of unknown type.
    Each request the client opens and every 4KiB of response sent to it add one frame to the allowance
    (window updates follow the data). One more: GOAWAY ENHANCE_YOUR_CALM (reason "flood"). While the
    client does not read what the gateway sends (PING and SETTINGS acknowledgements among it), nothing
    more is read from it."""
    overhead_window: Duration = Duration(10.0)
    """The span max_overhead_frames is counted over (the allowance refills at max_overhead_frames per
    overhead_window)."""


class Certificate(_Section):
    """One certificate of a TLS listener: PEM files, relative to the config file's directory."""

    cert: str
    """The certificate, followed by its chain (the intermediate CAs), as a client must receive it."""
    key: str
    """Its private key, without a passphrase."""


class Acme(_Section):
    """A listener's ``tls.acme`` table: its certificate comes from an ACME (RFC 8555) directory.

    One helper process of the master orders the certificate for ``names``,
    answers the CA's challenges (``challenge``), stores the account key and the
    certificate under ``storage`` (files of mode 0600) and renews it
    ``renew_before`` its expiry; a new certificate is put in service by a
    reload (as SIGHUP does: connections are not dropped). Until the first
    certificate arrives the listener serves the listener's ``certificates``,
    or without any a self-signed placeholder for the names. A failed order is
    logged, counted in /metrics and tried again after ``retry_backoff``,
    doubled after each further failure up to a day; the old certificate
    serves meanwhile. fastgate agrees to the directory's terms of service.
    """

    names: list[str]
    """DNS names the certificate is for, the first one its name; no wildcards (neither challenge can
    prove them)."""
    challenge: Literal["http-01", "tls-alpn-01"] = "http-01"
    """How the CA validates the names. "http-01": it asks port 80 for
    ``/.well-known/acme-challenge/<token>``, answered on the gateway's plain listeners (one is
    needed). "tls-alpn-01" (RFC 8737): it makes a TLS handshake to port 443 offering ALPN
    ``acme-tls/1``, answered on this listener with a challenge certificate; no plain listener is
    needed, and every other client's handshake is served as usual."""
    directory: str = "https://acme-v02.api.letsencrypt.org/directory"
    """The ACME directory URL; Let's Encrypt's staging one is
    "https://acme-staging-v02.api.letsencrypt.org/directory"."""
    email: str = ""
    """Contact address of the ACME account (expiry notices); empty registers no contact."""
    storage: str = "acme"
    """Directory of the account key, certificates and pending challenges, relative to the config
    file's directory; created with mode 0700. Several listeners may share it."""
    renew_before: Duration = Duration(30 * 86400.0)
    """Renew when the certificate has less than this left (e.g. "30d")."""
    retry_backoff: Duration = Duration(60.0)
    """Wait after a failed order before the next one; doubled after each further failure (up to 1d)."""
    directory_ca_file: str = ""
    """PEM file of the CAs to trust for the directory's own HTTPS (a test CA such as pebble's);
    empty: the system's trust store."""


class ListenerTls(_Section):
    """A listener's ``tls`` table: the listener terminates TLS.

    The certificate whose names (subjectAltName DNS names, "*.example.com"
    wildcards covering one label) match the client's SNI serves the
    handshake: an exact name first, then a wildcard, the first listed among
    equals; a client without SNI or with an unknown name gets the first
    certificate. The files are read at start and again on every reload; a
    missing or bad one refuses the config (the running one goes on).
    """

    certificates: list[Certificate] = []
    """The certificates, the default one first. May be empty with ``acme``."""
    acme: Acme | None = None
    """Obtain and renew a certificate from an ACME directory (see Acme). It serves its names ahead
    of ``certificates`` and is the default certificate once issued."""
    min_version: Literal["1.2", "1.3"] = "1.2"
    """Oldest TLS version accepted; an older client's handshake fails (protocol_version)."""
    ciphers: str = ""
    """TLS 1.2 cipher suites as an OpenSSL cipher string (e.g. "ECDHE+AESGCM:ECDHE+CHACHA20"); empty
    keeps Python's default (ECDHE with AES-GCM and ChaCha20 first, no SHA-1, no unauthenticated
    suites). TLS 1.3 suites are OpenSSL's and always on, so this cannot go with min_version "1.3"."""
    handshake_timeout: Duration = Duration(10.0)
    """Time for a client to complete its handshake once connected; then the connection is closed."""


class Listener(_Section):
    """One ``[[listeners]]`` entry: an address the gateway accepts HTTP on."""

    address: str
    """host:port to bind, e.g. "0.0.0.0:8080" or "[::1]:8080"."""
    name: str = ""
    """A label for logs and metrics; defaults to the address."""
    backlog: int = 1024
    """Accept queue length of each worker slot's socket."""
    tls: ListenerTls | None = None
    """Terminate TLS on this listener (see ListenerTls); upstreams then get X-Forwarded-Proto: https."""
    redirect_https: bool | int = False
    """On a plain listener, answer every request with a 308 to the same URL over https: true for
    port 443 (not written in the URL), or the https port (e.g. 8443). Its requests reach no route."""
    http2: bool | None = None
    """Serve HTTP/2 beside HTTP/1.1. On a TLS listener ALPN offers "h2" and "http/1.1" and the
    client's choice picks the protocol; that is the default (unset), ``false`` offers http/1.1 only.
    On a plain listener ``true`` accepts h2c with prior knowledge (a connection that opens with the
    HTTP/2 preface) beside HTTP/1.1; unset or ``false``: HTTP/1.1 only. (No h2c Upgrade from HTTP/1.1.)"""


class UpstreamServer(_Section):
    """A server of an upstream, when it needs more than its address."""

    address: str
    """host:port of the server."""
    weight: int = 1
    """Share of requests relative to the other servers (weighted balancers and consistent hashing)."""
    backup: bool = False
    """Used only when no other server can take requests."""
    drain: bool = False
    """Takes no new requests (requests in flight finish)."""


class DnsDiscovery(_Section):
    """An upstream's ``discovery`` table: its servers are what a DNS name resolves to, followed at run time.

    One helper process per gateway resolves the name (dnspython, ``pip install
    'fastgate[discovery]'``) and publishes the server set to every worker
    through shared memory (upstream/server_table.py); no reload, and requests
    in flight to a server that left finish there. A failed resolution keeps
    the last good set.
    """

    name: str
    """The DNS name to resolve, e.g. "api.internal" or a Kubernetes headless Service's
    "api.default.svc.cluster.local" (for SRV: "_http._tcp.api.default.svc.cluster.local")."""
    type: Literal["A", "AAAA", "SRV"] = "A"
    """A or AAAA: each address is a server on ``port``. SRV: each target is a server on the record's
    port, its weight the record's (0 counts as 1); targets of the lowest priority are the primaries,
    the others backups. An SRV target is resolved to its A records (AAAA with ``family = "ipv6"``)."""
    port: int = 0
    """The servers' port for A and AAAA (required there); SRV records carry their own."""
    family: Literal["ipv4", "ipv6"] = "ipv4"
    """For SRV: whether the targets' A or AAAA records are looked up."""
    weight: int = 1
    """For A and AAAA: every server's weight."""
    interval: Duration = Duration(30.0)
    """Longest time between two resolutions; a shorter TTL of the answer resolves sooner (not
    sooner than 1s). After a failure, the next try comes after the shorter of interval and 5s."""
    timeout: Duration = Duration(2.0)
    """Time one resolution may take, retries over the resolvers included."""
    resolvers: list[str] = []
    """Name servers as "ip" or "ip:port" (port 53 by default); empty: those of /etc/resolv.conf."""


class HealthCheck(_Section):
    """An upstream's ``health`` table: active HTTP checks, run once per gateway (not per worker).

    One helper process forked by the master probes every server of the
    upstream with ``GET path`` every ``interval`` and shares the verdict with
    all workers through shared memory. A server starts up; before its first
    passed check one failed check takes it out, after that ``fall`` failed
    checks in a row do, and ``rise`` passed checks in a row put it back.
    """

    path: str = "/"
    """Path (and query) of the GET request, e.g. "/healthz"."""
    expect: list[int | str] = msgspec.field(default_factory=lambda: ["2xx", "3xx"])
    """Statuses that pass: numbers (200) or classes ("2xx"). Any other status, no answer
    within timeout, a refused or broken connection, or a malformed answer fails the check."""
    interval: Duration = Duration(5.0)
    """Time between the starts of two checks of one server."""
    timeout: Duration = Duration(2.0)
    """Time for a check to connect and receive the response head; must be shorter than interval."""
    rise: int = 2
    """Passed checks in a row that put a server that is down back into service."""
    fall: int = 3
    """Failed checks in a row that take a server out of service."""
    host: str = ""
    """Host header of the checks; empty sends the server's own address ("10.0.0.5:9000")."""
    grpc_service: str | None = None
    """With protocol = "h2": check by the gRPC health protocol, grpc.health.v1.Health/Check for this
    service ("" asks about the whole server), instead of GET path; a check passes when the answer
    says SERVING (path and expect are then not used). An "h2" upstream without it is checked with
    an HTTP/2 GET path."""


class Upstream(_Section):
    """One ``[[upstreams]]`` entry: a named group of servers that routes forward to."""

    name: str
    """The name routes refer to."""
    servers: list[str | UpstreamServer] = []
    """Servers as "host:port", or tables with address, weight, backup, drain. Leave out with discovery."""
    discovery: DnsDiscovery | None = None
    """Servers found in DNS and followed at run time instead of a fixed list (see DnsDiscovery)."""
    protocol: Literal["h1", "h2"] = "h1"
    """What the servers speak: "h1" is HTTP/1.1 on pooled keep-alive connections; "h2" is HTTP/2,
    many requests at once on each connection (in cleartext h2c with prior knowledge; with tls = true
    the servers must select "h2" by ALPN, else the connect fails with 502). gRPC needs "h2"."""
    max_streams_per_connection: int = 100
    """With protocol = "h2": most requests in flight at once on one connection (the server's own
    SETTINGS_MAX_CONCURRENT_STREAMS lowers it). A request goes on a connection with room before a
    new connection is made; max_connections bounds the connections."""
    balance: Literal[
        "round_robin", "weighted_round_robin", "least_connections", "p2c_ewma", "consistent_hash", "random"
    ] = "round_robin"
    """How a server is chosen for each request (see upstream/balancer.py)."""
    hash_key: str = "ip"
    """For consistent_hash: "ip" (the client address), "header:NAME" or "cookie:NAME"."""
    connect_timeout: Duration = Duration(5.0)
    """Time to establish a TCP connection to a server; then 504."""
    connect_retries: int = 1
    """Further attempts, each on another server of the group, when a connection cannot be made
    (refused, unreachable, timed out). Nothing reached the upstream yet, so any request may go again."""
    retries: int = 1
    """Further attempts, each on another server, of an idempotent request without a body (GET, HEAD,
    OPTIONS, TRACE, PUT, DELETE) when its server reset or closed the connection, sent garbage or
    timed out before the response head, or answered one of retry_on_status. 0 turns this off.
    A route may set its own."""
    retry_on_status: list[int] = msgspec.field(default_factory=lambda: [502, 503, 504])
    """Response statuses that count as a failed attempt (the response is dropped and the request
    goes to another server while attempts remain)."""
    retry_backoff: Duration = Duration(0.025)
    """Base of the back-off before a retry: a random wait between 0 and base x 2^(attempt-1)."""
    max_concurrent_requests: int = 0
    """Most requests in flight to this upstream from one worker; past it the answer is 503 at
    once instead of a queue. 0: no limit."""
    max_connections: int = 0
    """Most open connections from one worker to this upstream's servers, idle or busy, connects in
    progress included. A request that needs a new connection past it waits for one (see
    max_pending_requests). 0: no limit."""
    max_pending_requests: int = 64
    """Most requests of one worker waiting for a connection under max_connections; past it the
    answer is 503 at once, and so it is for a request still waiting after connect_timeout."""
    breaker_error_ratio: float = 0.0
    """Circuit breaker: when at least this share of the exchanges that ended in the last
    breaker_window failed (no connection, reset, timeout, a status in retry_on_status), and they
    were at least breaker_min_requests, requests get 503 at once for breaker_open_time; then a few
    probe requests go through, and a success closes the breaker, a failure opens it again. Judged
    by each worker on its own. 0 turns it off."""
    breaker_min_requests: int = 20
    """Exchanges in the window below which the breaker does not open, whatever the ratio."""
    breaker_window: Duration = Duration(10.0)
    """The span of recent exchanges the error ratio is taken over."""
    breaker_open_time: Duration = Duration(5.0)
    """How long an open breaker refuses requests before it lets probes through."""
    eject_after_failures: int = 5
    """Passive health: a server whose last this-many exchanges failed in a row (no connection,
    reset, timeout, or a 5xx answer) is taken out of the balancer for a while. 0 turns this off."""
    ejection_time: Duration = Duration(10.0)
    """How long an ejected server stays out, times the number of times it was ejected (up to 10x)."""
    max_ejected: float = 0.5
    """Share of the group's servers that may be out at once (rounded down: a single server is
    never ejected)."""
    retry_budget: float = 0.2
    """Retries in flight may be at most this share of the group's requests in flight (but 3 are
    always allowed), so that retries cannot snowball when every server struggles."""
    read_timeout: Duration = Duration(60.0)
    """Longest pause while waiting for response bytes from a server, before and after the response
    head; then 504, or, once the head went out, the client connection is cut. A route may set its
    own (its idle_timeout)."""
    try_timeout: Duration = Duration(0.0)
    """Time for one attempt, from the moment its request is completely sent (after the connect, and
    after the last byte of a request body) to its response head; past it the attempt fails as timed
    out (504) and may be retried. 0 means no limit but read_timeout. A route may set its own."""
    total_timeout: Duration = Duration(0.0)
    """Time for the whole request, from the moment the gateway has all of it (head and body) to the
    final response head, across every attempt, connect and back-off; no retry starts when less than
    50ms of it is left. Past it the answer is 504. The body after the head is bounded by
    read_timeout only. 0 means no limit. A route may set its own."""
    max_idle_connections: int = 64
    """Idle keep-alive connections kept per server in each worker (HTTP/1.1)."""
    idle_timeout: Duration = Duration(60.0)
    """An idle pooled connection older than this is closed."""
    max_requests_per_connection: int = 1000
    """A connection is closed after this many requests (0: no limit); an HTTP/2 connection takes no
    new request after them and closes once its last one is done."""
    health: HealthCheck | None = None
    """Active health checks of the servers; none without this table (see HealthCheck)."""
    tls: bool = False
    """Speak HTTPS to the servers (their health checks too). The certificate is verified (see
    tls_verify) against the name in tls_server_name, else each server's host; an IP address is
    checked against the certificate's IP addresses and sends no SNI."""
    tls_verify: bool = True
    """Check the servers' certificates (chain and name); false accepts any certificate."""
    tls_ca_file: str = ""
    """PEM file of the CA certificates to trust, relative to the config file's directory; empty:
    the system's trust store."""
    tls_server_name: str = ""
    """Name sent in SNI and that the certificate must carry; empty: each server's host."""
    tls_client_cert: str = ""
    """PEM certificate (and chain) presented to servers that ask for one (mutual TLS); with tls_client_key."""
    tls_client_key: str = ""
    """The private key of tls_client_cert, without a passphrase."""


class HeaderEdits(_Section):
    """Header changes applied to a request or a response."""

    set: dict[str, str] = {}
    """Headers to replace (any existing value is removed first)."""
    add: dict[str, str] = {}
    """Headers to append, keeping existing ones."""
    remove: list[str] = []
    """Headers to remove."""


class Respond(_Section):
    """A fixed answer the gateway gives itself, like nginx's ``return``."""

    status: int = 200
    """Status code of the answer."""
    body: str = ""
    """Body of the answer."""
    content_type: str = "text/plain; charset=utf-8"
    """Content-Type of the answer."""


class AggregatePart(_Section):
    """One ``[[routes.aggregate]]`` entry: a GET the route sends to an upstream, whose JSON
    answer goes into the merged answer under ``key`` (see proxy/aggregate.py)."""

    key: str
    """Name of this part's answer in the merged JSON object ("errors" is reserved)."""
    upstream: str
    """Name of the upstream the part is sent to."""
    path: str | None = None
    """Path (with an optional query) sent to the upstream; default: the request's path, after
    prefix_rewrite. The client's query string is appended to it."""
    timeout: Duration | None = None
    """Time for the whole part (connect, response head and body); default and upper bound: the
    route's aggregate_timeout. Past it the part fails as timed out (504)."""
    required: bool = True
    """A required part that fails fails the whole answer (its 502, 503 or 504, JSON); an optional
    one becomes null and an entry in the answer's "errors" object."""
    max_size: Size = Size(1024 * 1024)
    """Largest response body of this part; a larger one is a part failure (502)."""


class Matcher(_Section):
    """One condition of a route on a request header, query parameter or cookie (in its
    ``match_headers``, ``match_query`` or ``match_cookies``): a name and exactly one of exact,
    prefix, regex and present. Values are compared as bytes (the config's text in UTF-8),
    case-sensitively."""

    name: str
    """The header's name (any case), or the query parameter's or cookie's (case-sensitive)."""
    exact: str | None = None
    """The value must be exactly this."""
    prefix: str | None = None
    """The value must start with this."""
    regex: str | None = None
    """The value must match this regular expression (Python syntax, matched from the start, like
    path_regex: end it with "$" to match the whole value)."""
    present: bool | None = None
    """true: the request must carry it, with any value (even empty); false: it must not."""


class Route(_Section):
    """One ``[[routes]]`` entry: which requests it takes and what it does with them.

    A route matches when the host, the path, the method and every condition of
    match_headers, match_query and match_cookies match. Among the routes that
    match, the most specific wins: an exact host beats a wildcard host (a longer
    wildcard a shorter one), which beats no host; then an exact path beats a
    regex, which beats a prefix, and a longer prefix beats a shorter one; then a
    route with more conditions (match_headers, match_query and match_cookies
    entries together) beats one with fewer; then a route with methods beats one
    without; ties go to the route listed first.
    """

    name: str = ""
    """A label for logs and metrics; defaults to "routes[i]"."""
    hosts: list[str] = []
    """Host names this route serves: "api.example.com" or "*.example.com"; empty means any."""
    path: str | None = None
    """Exact path to match."""
    path_prefix: str | None = None
    """Path prefix to match; with neither path nor path_regex, "/" (everything)."""
    path_regex: str | None = None
    """Regular expression the path must match (Python syntax, searched from the start)."""
    methods: list[str] = []
    """Methods this route takes; empty means any."""
    match_headers: list[Matcher] = []
    """Request headers that must match too, e.g. ``{ name = "X-Api-Version", exact = "2" }``. A
    header sent several times is matched on its values joined with ", "."""
    match_query: list[Matcher] = []
    """Query parameters that must match too, e.g. ``{ name = "beta", present = true }``: the first
    parameter of that name, name and value percent-decoded ("+" is a space); "?beta" and
    "?beta=" are present with an empty value."""
    match_cookies: list[Matcher] = []
    """Cookies that must match too, e.g. ``{ name = "canary", exact = "1" }``: the first cookie of
    that name in the Cookie header(s); its value without surrounding double quotes, not decoded."""
    upstream: str | None = None
    """Name of the upstream to forward to. Exactly one of upstream, respond and aggregate."""
    respond: Respond | None = None
    """Answer the request here without an upstream."""
    aggregate: list[AggregatePart] = []
    """Send the request to these parts in parallel and answer with their JSON answers merged
    into one object, each under its key (GET and HEAD only; see the README)."""
    aggregate_timeout: Duration = Duration(5.0)
    """Time for a whole aggregated answer: parts still running then fail as timed out."""
    prefix_rewrite: str | None = None
    """Replace the matched path_prefix with this before forwarding ("/" strips it)."""
    host_rewrite: str | None = None
    """Send this Host to the upstream instead of the client's."""
    max_body_size: Size | None = None
    """Largest request body for this route; defaults to [http].max_body_size."""
    request_buffering: bool = True
    """Read a request body whole (up to request_buffer_size) before going upstream; false streams
    every body as it arrives (uploads, long-lived request streams)."""
    request_buffer_size: Size | None = None
    """Largest body read whole before going upstream; defaults to [http].request_buffer_size."""
    upgrades: list[str] = msgspec.field(default_factory=lambda: ["websocket"])
    """Protocols a client may switch to through this route (HTTP/1.1 Upgrade). Others, h2c
    among them, are dropped from the request, which is then served as a plain request."""
    request_headers: HeaderEdits = msgspec.field(default_factory=HeaderEdits)
    """Header edits on the request sent upstream."""
    response_headers: HeaderEdits = msgspec.field(default_factory=HeaderEdits)
    """Header edits on the response sent to the client."""
    request_id: bool = True
    """Keep the client's X-Request-ID or generate one, send it upstream and echo it back."""
    connect_timeout: Duration | None = None
    """Time to connect to a server of the upstream; default: the upstream's connect_timeout."""
    try_timeout: Duration | None = None
    """Time for one attempt, from its request completely sent to its response head (see
    Upstream.try_timeout); default: the upstream's try_timeout."""
    total_timeout: Duration | None = None
    """Time from the whole request received to the final response head, across every attempt and
    back-off (see Upstream.total_timeout); default: the upstream's total_timeout."""
    idle_timeout: Duration | None = None
    """Longest pause between two reads from the server while its response is awaited or relayed;
    default: the upstream's read_timeout."""
    retries: int | None = None
    """Further attempts after the first, the attempt cap (see Upstream.retries); default: the
    upstream's retries."""
    grpc_retry_methods: list[str] = []
    """gRPC methods that may be sent again, like an idempotent HTTP request: "/package.Service/Method",
    or "/package.Service/*" for all of a service's. Their request is read whole (up to
    request_buffer_size) before it goes upstream, so mark only unary and server-streaming methods
    (a client-streaming or bidirectional call would wait for its client to finish sending). They go
    to another server when an attempt fails as an HTTP request's would, and when the server answers
    UNAVAILABLE (grpc-status 14) without a message (trailers-only). Other gRPC calls stream."""
    limits: list[Limit] = []
    """Rate limits checked (all together) before the request is answered or forwarded;
    see fastgate/ratelimit/config.py and the README."""


class Admin(_Section):
    """The admin listener: /healthz, /readyz, /metrics, /status, /status.html, /config."""

    address: str = "127.0.0.1:9901"
    """host:port it listens on, served by the workers; "" turns it off. Never expose it publicly."""
    token: str = ""
    """When set, every endpoint but /healthz and /readyz requires ``Authorization: Bearer <token>``
    (the status page also takes ``?token=``)."""
    metrics: bool = True
    """Count requests, upstream events and rate-limit decisions in shared memory (no I/O per request)."""


class AccessLog(_Section):
    """The ``[access_log]`` table: one line per finished request, written by each worker."""

    path: str = "off"
    """A file to append to (created if missing, reopened on SIGUSR1), "stdout", or "off"."""
    format: Literal["json", "combined"] = "json"
    """"json": one JSON object per line with every field of the request record (see the
    README); "combined": the nginx/Apache combined format."""
    buffer: Size = Size(64 * 1024)
    """Most bytes of lines a worker holds before writing them. Lines are written on every
    clock tick (at least once a second) or when this fills; while the target cannot take
    them (a full pipe) lines past this are dropped and counted, never waited for."""


class Tracing(_Section):
    """The ``[tracing]`` table: W3C Trace Context propagation and optional OTLP span export."""

    enabled: bool = False
    """Continue the client's valid ``traceparent`` (or start a trace) and send the upstream a
    ``traceparent`` naming the gateway's own span; the trace id goes to the access log. Off by
    default (as in Envoy and Traefik): it costs ~5% of a small request's CPU; when off, a client's
    traceparent is relayed untouched."""
    sample_ratio: float = 1.0
    """Share of new traces (no valid incoming traceparent) marked sampled (flag 01), decided
    from the trace id. An incoming traceparent's sampled flag is kept as it is."""
    otlp_endpoint: str = ""
    """Where sampled spans are POSTed as OTLP/HTTP protobuf, e.g.
    "http://127.0.0.1:4318/v1/traces"; "" exports nothing. Needs ``pip install 'fastgate[otlp]'``."""
    service_name: str = "fastgate"
    """The ``service.name`` resource attribute of exported spans."""
    export_batch: int = 512
    """Most spans in one export request."""
    export_queue: int = 4096
    """Most spans a worker holds while the receiver is slow or down; more are dropped and counted."""
    export_timeout: Duration = Duration(5.0)
    """Time for one export request (connect, send, answer); then the batch is dropped."""


class Events(_Section):
    """The ``[events]`` table: one event per finished request (the access log's fields), published
    to a NATS subject or appended to a Redis stream, for analytics downstream.

    Delivery is at most once: records are buffered in each worker (up to ``max_buffer``) and
    sent in batches on the worker's clock tick by a background task. A request never waits for
    the sink; when it is slow or down, records beyond ``max_buffer`` are dropped and counted,
    and a batch whose send fails is dropped too.
    """

    sink: Literal["nats", "redis"]
    """"nats": one JSON message per request on ``subject`` (nats-py, the "events" extra);
    "redis": one entry per request on the stream ``subject``, its field "event" holding the same JSON."""
    url: str
    """Where the sink is: "nats://[user:password@]host:port" ("tls://..." for TLS), or
    "redis://[user:password@]host:port/db" ("rediss://..." for TLS, "unix:///path/redis.sock")."""
    subject: str = "fastgate.requests"
    """The NATS subject (no wildcards), or the key of the Redis stream."""
    max_batch: int = 256
    """Most records sent in one round trip (NATS: the messages and one flush; Redis: one script call)."""
    max_buffer: int = 10000
    """Records a worker holds while the sink is slow or down; more are dropped (and counted)."""
    stream_max_len: int = 100000
    """Redis: trim the stream to about this many entries on every XADD (MAXLEN ~); 0: never trim."""
    timeout: Duration = Duration(1.0)
    """Longest wait for connecting and for each batch; a batch that takes longer is dropped and the
    connection is made again, with a back-off from 100ms doubling up to 5s."""
    tls_ca_file: str = ""
    """CA bundle that signed the server certificate, for tls:// and rediss:// urls; empty: the system's."""


class Config(_Section):
    """The whole config file."""

    server: Server = msgspec.field(default_factory=Server)
    http: Http = msgspec.field(default_factory=Http)
    http2: Http2 = msgspec.field(default_factory=Http2)
    listeners: list[Listener] = []
    upstreams: list[Upstream] = []
    routes: list[Route] = []
    ratelimit: RateLimitSettings = msgspec.field(default_factory=RateLimitSettings)
    admin: Admin = msgspec.field(default_factory=Admin)
    access_log: AccessLog = msgspec.field(default_factory=AccessLog)
    tracing: Tracing = msgspec.field(default_factory=Tracing)
    events: Events | None = None
    """Publish one event per finished request to NATS or a Redis stream; absent: off."""
