"""One health check of an HTTP/2 upstream's server: an HTTP/2 GET, or the gRPC health protocol.

An upstream with ``protocol = "h2"`` is checked in its own protocol: a new
connection (h2c with prior knowledge, or TLS where the server must select
h2 by ALPN), one stream, then the connection is closed (GOAWAY). Without
``grpc_service`` the stream is ``GET path`` and passes when its response
status is one of ``expect``. With ``grpc_service`` it is the unary call
grpc.health.v1.Health/Check for that service ("" is the whole server), and
it passes when the answer's status is SERVING and its grpc-status 0.

The two protobuf messages of the health protocol are tiny (one field each),
so they are written and read here by hand: HealthCheckRequest{string service
= 1}, HealthCheckResponse{ServingStatus status = 1}.
"""

import asyncio

from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.events import DataReceived, ResponseReceived, StreamEnded, StreamReset, TrailersReceived
from h2.exceptions import H2Error

HEALTH_CHECK_PATH = b"/grpc.health.v1.Health/Check"
SERVING = 1
_READ_BYTES = 64 * 1024


class ProbeFailed(Exception):
    """The check failed for this reason (the checker's outcome text)."""


def health_check_request(service: str) -> bytes:
    """A length-prefixed gRPC message: HealthCheckRequest{service}."""
    name = service.encode()
    message = b"\x0a" + _varint(len(name)) + name if name else b""
    return b"\x00" + len(message).to_bytes(4, "big") + message


def serving_status(body: bytes) -> int:
    """The status field of a length-prefixed HealthCheckResponse (0, UNKNOWN, when absent)."""
    if len(body) < 5 or body[0] != 0:
        raise ProbeFailed("not a gRPC health answer")
    message = body[5 : 5 + int.from_bytes(body[1:5], "big")]
    pos = 0
    status = 0
    while pos < len(message):
        key, pos = _read_varint(message, pos)
        kind = key & 7
        if kind == 0:
            value, pos = _read_varint(message, pos)
            if key >> 3 == 1:
                status = value
        elif kind == 2:
            length, pos = _read_varint(message, pos)
            pos += length
        else:
            raise ProbeFailed("not a gRPC health answer")
    return status


async def probe_h2(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, authority: bytes, path: bytes,
                   scheme: bytes, grpc_service: str | None) -> int:
    """Run one check on an open connection: the response status (HTTP), or the serving status (gRPC);
    raise ProbeFailed. The connection is told GOAWAY before the caller closes it."""
    conn = H2Connection(H2Configuration(client_side=True, header_encoding=None))
    try:
        return await _exchange(conn, reader, writer, authority, path, scheme, grpc_service)
    except H2Error as exc:
        raise ProbeFailed(f"HTTP/2 protocol error: {exc}") from None
    finally:
        try:
            conn.close_connection()
            writer.write(conn.data_to_send())
        except (H2Error, OSError):
            pass


async def _exchange(conn: H2Connection, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                    authority: bytes, path: bytes, scheme: bytes, grpc_service: str | None) -> int:
    conn.initiate_connection()
    fields = [(b":method", b"GET" if grpc_service is None else b"POST"), (b":scheme", scheme),
              (b":authority", authority), (b":path", path if grpc_service is None else HEALTH_CHECK_PATH),
              (b"user-agent", b"fastgate-health-check")]
    if grpc_service is None:
        conn.send_headers(1, fields, end_stream=True)
    else:
        conn.send_headers(1, fields + [(b"content-type", b"application/grpc"), (b"te", b"trailers")])
        conn.send_data(1, health_check_request(grpc_service), end_stream=True)
    writer.write(conn.data_to_send())
    status = 0
    headers: list = []
    body = bytearray()
    while True:
        data = await reader.read(_READ_BYTES)
        if not data:
            raise ProbeFailed("connection closed before a response")
        for event in conn.receive_data(data):
            if isinstance(event, ResponseReceived) and event.stream_id == 1:
                headers = event.headers
                status = int(dict(headers)[b":status"])
                if grpc_service is None:
                    return status
            elif isinstance(event, DataReceived) and event.stream_id == 1:
                body += event.data
                conn.acknowledge_received_data(event.flow_controlled_length, 1)
            elif isinstance(event, TrailersReceived) and event.stream_id == 1:
                headers = event.headers
            elif isinstance(event, StreamReset) and event.stream_id == 1:
                raise ProbeFailed("stream reset by the server")
            elif isinstance(event, StreamEnded) and event.stream_id == 1:
                return _grpc_answer(status, dict(headers), bytes(body))
        writer.write(conn.data_to_send())


def _grpc_answer(status: int, fields: dict, body: bytes) -> int:
    if status != 200:
        raise ProbeFailed(f"status {status}")
    grpc_status = fields.get(b"grpc-status", b"")
    if grpc_status != b"0":
        raise ProbeFailed(f"grpc-status {grpc_status.decode('latin-1') or 'missing'}")
    return serving_status(body)


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _read_varint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while pos < len(data):
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7
        if shift > 63:
            break
    raise ProbeFailed("not a gRPC health answer")
