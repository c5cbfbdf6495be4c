"""The admin API of upstream servers: read them, add, remove, drain and weigh them at run time.

Paths (under the admin token; changing needs a token to be configured)::

    GET    /upstreams                          every upstream and its servers
    GET    /upstreams/NAME                     one upstream
    POST   /upstreams/NAME/servers             add   {"address": "10.0.0.7:8080", "weight": 2, "backup": false}
    PATCH  /upstreams/NAME/servers/ADDRESS     change {"weight": 5} and/or {"drain": true}
    DELETE /upstreams/NAME/servers/ADDRESS     remove (its requests in flight finish)

ADDRESS is host:port, percent-encoded where needed ("%5B::1%5D:8080").
A change is written to the shared server table (upstream/server_table.py)
as an edit over the upstream's config or DNS servers: this worker applies
it before answering, the others on their next clock tick (within a
second). Edits last until the next reload, which starts from the config.
Every answer is JSON: the upstream as it is now, or {"error", "status"}.
"""

from urllib.parse import unquote

import msgspec

from fastgate.config.errors import FieldError
from fastgate.config.load import parse_address
from fastgate.upstream.server_table import ServerEdit, ServerTable, TableFull, UpstreamServers

_MAX_WEIGHT = 1000


class AddServer(msgspec.Struct, forbid_unknown_fields=True):
    address: str
    weight: int = 1
    backup: bool = False
    drain: bool = False


class ChangeServer(msgspec.Struct, forbid_unknown_fields=True):
    weight: int | None = None
    drain: bool | None = None


class ApiError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class UpstreamsApi:
    def __init__(self, table: ServerTable, configs, applied) -> None:
        self.table = table
        self.discovered = {c.name: c.discovery for c in configs}
        """Each upstream's discovery table (or None), by name."""
        self.applied = applied
        """Call after a change: this worker applies the table now (MembershipView.refresh)."""

    def answer(self, method: bytes, path: str, body: bytes) -> tuple[int, bytes]:
        """(status, JSON body) for a request whose path starts with /upstreams."""
        try:
            return self._route(method, [unquote(p) for p in path.split("/")[2:]], body)
        except ApiError as exc:
            return exc.status, msgspec.json.encode({"error": str(exc), "status": exc.status})

    def _route(self, method: bytes, parts: list[str], body: bytes) -> tuple[int, bytes]:
        if not parts or parts == [""]:
            _allow(method, b"GET")
            return 200, msgspec.json.encode({"upstreams": {name: self._document(name) for name in self.table.slots}})
        name = parts[0]
        if name not in self.table.slots:
            raise ApiError(404, f"no upstream named {name!r}")
        if len(parts) == 1:
            _allow(method, b"GET")
            return 200, msgspec.json.encode(self._document(name))
        if parts[1] != "servers" or len(parts) > 3:
            raise ApiError(404, "no such admin endpoint")
        if len(parts) == 2:
            _allow(method, b"POST")
            return 201, self._add(name, _decode(body, AddServer))
        if method == b"PATCH":
            return 200, self._change(name, parts[2], _decode(body, ChangeServer))
        _allow(method, b"DELETE")
        return 200, self._remove(name, parts[2])

    def _add(self, name: str, add: AddServer) -> bytes:
        _check_address(add.address)
        _check_weight(add.weight)

        def edit(servers: UpstreamServers) -> None:
            if any(s.address == add.address for s in servers.effective()):
                raise ApiError(409, f"upstream {name!r} already has server {add.address}")
            servers.edits[add.address] = ServerEdit(added=True, weight=add.weight, backup=add.backup,
                                                    drain=add.drain)
        return self._edit(name, edit)

    def _change(self, name: str, address: str, change: ChangeServer) -> bytes:
        if change.weight is None and change.drain is None:
            raise ApiError(400, "give weight, drain or both")
        if change.weight is not None:
            _check_weight(change.weight)

        def edit(servers: UpstreamServers) -> None:
            _must_have(servers, name, address)
            current = servers.edits.setdefault(address, ServerEdit())
            if change.weight is not None:
                current.weight = change.weight
            if change.drain is not None:
                current.drain = change.drain
        return self._edit(name, edit)

    def _remove(self, name: str, address: str) -> bytes:
        def edit(servers: UpstreamServers) -> None:
            _must_have(servers, name, address)
            if any(s.address == address for s in servers.base):
                servers.edits[address] = ServerEdit(removed=True)
            else:
                del servers.edits[address]
        return self._edit(name, edit)

    def _edit(self, name: str, change) -> bytes:
        try:
            with self.table.edit(name) as servers:
                change(servers)
        except TableFull as exc:
            raise ApiError(400, f"upstream {name!r} cannot take this change: {exc}") from None
        self.applied()
        return msgspec.json.encode(self._document(name))

    def _document(self, name: str) -> dict:
        servers = self.table.read(name)
        document = {"name": name, "servers": servers.effective(),
                    "edited": sorted(servers.edits)}
        discovery = self.discovered.get(name)
        if discovery is not None:
            document["discovery"] = {"name": discovery.name, "type": discovery.type,
                                     "resolved": servers.resolved, "failed": servers.failed}
        return document


def _allow(method: bytes, allowed: bytes) -> None:
    if method != allowed and not (allowed == b"GET" and method == b"HEAD"):
        raise ApiError(405, f"this path answers {allowed.decode()} only")


def _decode(body: bytes, type_):
    try:
        return msgspec.json.decode(body, type=type_)
    except msgspec.DecodeError as exc:
        raise ApiError(400, f"bad JSON body: {exc}") from None


def _check_address(address: str) -> None:
    try:
        parse_address(address, "address")
    except FieldError as exc:
        raise ApiError(400, f"address: {exc.reason}") from None


def _check_weight(weight: int) -> None:
    if not 1 <= weight <= _MAX_WEIGHT:
        raise ApiError(400, f"weight: must be between 1 and {_MAX_WEIGHT}")


def _must_have(servers: UpstreamServers, name: str, address: str) -> None:
    if not any(s.address == address for s in servers.effective()):
        raise ApiError(404, f"upstream {name!r} has no server {address}")
