"""One resolution of an upstream's ``discovery`` table: its DNS name -> the servers, through dnspython.

A and AAAA: every address is a server on the table's port, with its weight.
SRV: every target is resolved to its addresses (A, or AAAA with ``family =
"ipv6"``); each becomes a server on the record's port with the record's
weight (0 counts as 1, at most 1000); the targets of the lowest priority are
the primaries, the others backups (used only when no primary can take a
request). An answer without records (NXDOMAIN, NODATA) is a failure like a
timeout: the caller keeps the servers it has, so a DNS hiccup never empties
an upstream.
"""

import asyncio
from dataclasses import dataclass

import dns.asyncresolver
import dns.exception
import dns.nameserver
import dns.resolver

from fastgate.config.schema import DnsDiscovery
from fastgate.discovery.settings import parse_resolver
from fastgate.upstream.server_table import MAX_SERVERS, ServerEntry

_MAX_WEIGHT = 1000


class ResolutionFailed(Exception):
    """The name could not be resolved to any server; the message says why."""


@dataclass(frozen=True, slots=True)
class Resolved:
    servers: list[ServerEntry]
    """Sorted by address, at most MAX_SERVERS."""
    ttl_s: float
    """The shortest TTL of the records used."""


def make_resolver(discovery: DnsDiscovery) -> dns.asyncresolver.Resolver:
    """A resolver for the table's name servers (those of /etc/resolv.conf when it lists none)."""
    resolver = dns.asyncresolver.Resolver(configure=not discovery.resolvers)
    if discovery.resolvers:
        resolver.nameservers = [dns.nameserver.Do53Nameserver(*parse_resolver(r)) for r in discovery.resolvers]
    resolver.lifetime = float(discovery.timeout)
    resolver.cache = None  # the TTL decides when to ask again; a cached answer would hide changes
    return resolver


async def resolve(resolver: dns.asyncresolver.Resolver, discovery: DnsDiscovery) -> Resolved:
    """The servers ``discovery.name`` stands for now; raise ResolutionFailed."""
    if discovery.type == "SRV":
        return await _resolve_srv(resolver, discovery)
    addresses, ttl = await _addresses(resolver, discovery.name, discovery.type)
    return _resolved([ServerEntry(_join(ip, discovery.port), discovery.weight) for ip in addresses], ttl)


async def _resolve_srv(resolver, discovery: DnsDiscovery) -> Resolved:
    answer = await _query(resolver, discovery.name, "SRV")
    records = list(answer)
    first = min(r.priority for r in records)
    rdtype = "AAAA" if discovery.family == "ipv6" else "A"
    targets = sorted({r.target.to_text() for r in records})
    found = await asyncio.gather(*(_addresses(resolver, t, rdtype) for t in targets), return_exceptions=True)
    by_target = {t: f for t, f in zip(targets, found) if not isinstance(f, BaseException)}
    if not by_target:
        raise ResolutionFailed(f"no SRV target of {discovery.name} resolves: {found[0]}")
    ttl = min([float(answer.rrset.ttl)] + [t for _, t in by_target.values()])
    servers = [
        ServerEntry(_join(ip, r.port), min(_MAX_WEIGHT, max(1, r.weight)), backup=r.priority != first)
        for r in records if r.target.to_text() in by_target
        for ip in by_target[r.target.to_text()][0]
    ]
    return _resolved(servers, ttl)


async def _addresses(resolver, name: str, rdtype: str) -> tuple[list[str], float]:
    answer = await _query(resolver, name, rdtype)
    return [r.address for r in answer], float(answer.rrset.ttl)


async def _query(resolver, name: str, rdtype: str):
    try:
        return await resolver.resolve(name, rdtype, search=False)
    except dns.resolver.NXDOMAIN:
        raise ResolutionFailed(f"{name}: no such name (NXDOMAIN)") from None
    except dns.resolver.NoAnswer:
        raise ResolutionFailed(f"{name}: no {rdtype} records") from None
    except dns.resolver.LifetimeTimeout:
        raise ResolutionFailed(f"{name} {rdtype}: no answer within {resolver.lifetime:g}s") from None
    except dns.resolver.NoNameservers as exc:
        raise ResolutionFailed(f"{name} {rdtype}: every name server failed ({exc})") from None
    except dns.exception.DNSException as exc:
        raise ResolutionFailed(f"{name} {rdtype}: {exc}") from None


def _resolved(servers: list[ServerEntry], ttl_s: float) -> Resolved:
    unique: dict[str, ServerEntry] = {}
    for server in servers:
        unique.setdefault(server.address, server)  # one address twice (two SRV records): the first wins
    return Resolved(sorted(unique.values(), key=lambda s: s.address)[:MAX_SERVERS], ttl_s)


def _join(ip: str, port: int) -> str:
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"
