"""A small authoritative DNS server for the tests (dnslib's server class), whose records a test changes.

``with DnsServer() as dns:`` answers UDP queries on 127.0.0.1 at
``dns.port``; ``dns.set("api.test", "A", ["127.0.0.2", ...])`` or
``dns.set("_http._tcp.api.test", "SRV", [(priority, weight, port, target)])``
replaces a name's records (an empty list: the name has no records of that
type, so the answer is NODATA, or NXDOMAIN when it has none at all);
``fail(True)`` makes it answer SERVFAIL to everything. Every answer has a
TTL of ``ttl`` seconds. ``queries`` counts the questions per (name, type).
"""

import threading
from collections import Counter

from dnslib import AAAA, QTYPE, RCODE, RR, SRV, A
from dnslib.server import BaseResolver, DNSLogger, DNSServer


class _Resolver(BaseResolver):
    def __init__(self, owner: "DnsServer") -> None:
        self.owner = owner

    def resolve(self, request, handler):
        reply = request.reply()
        name = str(request.q.qname).rstrip(".").lower()
        kind = QTYPE[request.q.qtype]
        with self.owner.lock:
            self.owner.queries[(name, kind)] += 1
            if self.owner.failing:
                reply.header.rcode = RCODE.SERVFAIL
                return reply
            records = self.owner.records.get((name, kind), [])
            known = any(n == name and values for (n, _), values in self.owner.records.items())
        for value in records:
            reply.add_answer(RR(request.q.qname, request.q.qtype, rdata=_rdata(kind, value), ttl=self.owner.ttl))
        if not known:
            reply.header.rcode = RCODE.NXDOMAIN
        return reply


def _rdata(kind: str, value):
    if kind == "A":
        return A(value)
    if kind == "AAAA":
        return AAAA(value)
    priority, weight, port, target = value
    return SRV(priority, weight, port, target)


class DnsServer:
    def __init__(self, ttl: int = 1) -> None:
        self.ttl = ttl
        self.lock = threading.Lock()
        self.records: dict[tuple[str, str], list] = {}
        self.queries: Counter = Counter()
        self.failing = False
        self._udp = DNSServer(_Resolver(self), address="127.0.0.1", port=0,  # binds here, on a port the OS gives
                              logger=DNSLogger("-request,-reply,-truncated,-recv,-send,-data"))
        self.port = self._udp.server.server_address[1]

    def set(self, name: str, kind: str, values: list) -> None:
        with self.lock:
            self.records[(name.lower(), kind)] = list(values)

    def fail(self, failing: bool) -> None:
        with self.lock:
            self.failing = failing

    def asked(self, name: str, kind: str) -> int:
        with self.lock:
            return self.queries[(name.lower(), kind)]

    def __enter__(self) -> "DnsServer":
        self._udp.start_thread()
        return self

    def __exit__(self, *exc: object) -> None:
        self._udp.stop()
        self._udp.server.server_close()
