"""The ClientHello reader (wire/tls_hello.py) on real hellos, made by Python's ssl and by
``openssl s_client``, cut into pieces and into many records, and on hostile bytes."""

import socket
import ssl
import subprocess

import pytest
from hypothesis import given, settings, strategies as st

from fastgate.wire.tls_hello import MAX_HELLO_BYTES, ClientHello, hello_bytes_needed, read_client_hello


def python_hello(server_name: str | None = "Shop.Test", alpn: list[str] | None = None) -> bytes:
    """The first flight of Python's ssl (OpenSSL) client."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    if alpn:
        context.set_alpn_protocols(alpn)
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    client = context.wrap_bio(incoming, outgoing, server_hostname=server_name)
    with pytest.raises(ssl.SSLWantReadError):
        client.do_handshake()
    return outgoing.read()


def openssl_hello(*args: str) -> bytes:
    """The first flight of ``openssl s_client`` to a socket that only listens."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        client = subprocess.Popen(["openssl", "s_client", "-connect", f"127.0.0.1:{port}", *args],
                                  stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            server.settimeout(10)
            conn, _ = server.accept()
            with conn:
                conn.settimeout(10)
                data = b""
                while (needed := hello_bytes_needed(data)) is not None and needed > len(data):
                    chunk = conn.recv(65536)
                    assert chunk, "openssl closed before its hello was complete"
                    data += chunk
                return data
        finally:
            client.kill()
            client.wait(10)


def as_records(hello: bytes, size: int) -> bytes:
    """The same handshake message carried in records of ``size`` bytes each."""
    message = hello[5:]
    return b"".join(b"\x16\x03\x01" + len(part).to_bytes(2, "big") + part
                    for part in (message[i:i + size] for i in range(0, len(message), size)))


def test_python_ssl_hello_names_its_server_and_protocols():
    hello = python_hello("Shop.Test.", ["acme-tls/1"])
    assert hello_bytes_needed(hello) == len(hello)
    assert read_client_hello(hello) == ClientHello("shop.test", (b"acme-tls/1",))
    assert read_client_hello(python_hello(None, ["h2", "http/1.1"])) == ClientHello(None, (b"h2", b"http/1.1"))
    assert read_client_hello(python_hello("shop.test")) == ClientHello("shop.test", ())


@pytest.mark.parametrize("args, expected", [
    (["-servername", "www.shop.test", "-alpn", "acme-tls/1"], ClientHello("www.shop.test", (b"acme-tls/1",))),
    (["-servername", "shop.test", "-alpn", "h2,http/1.1", "-tls1_2"], ClientHello("shop.test", (b"h2", b"http/1.1"))),
    (["-noservername"], ClientHello(None, ())),
])
def test_openssl_s_client_hellos(args, expected):
    hello = openssl_hello(*args)
    assert read_client_hello(hello) == expected


def test_a_hello_in_pieces_asks_for_the_rest_and_is_read_once_whole():
    hello = python_hello("shop.test", ["acme-tls/1"])
    for cut in range(len(hello)):
        needed = hello_bytes_needed(hello[:cut])
        assert needed is not None and cut < needed <= len(hello)
        assert read_client_hello(hello[:cut]) is None
    # the bytes after the hello (none are sent before the server answers, but a peek may see some)
    assert read_client_hello(hello + b"\x17\x03\x03\x00\x01x") == ClientHello("shop.test", (b"acme-tls/1",))


@pytest.mark.parametrize("size", [4, 7, 100, 511])
def test_a_hello_spread_over_many_records_is_reassembled(size):
    hello = as_records(python_hello("shop.test", ["acme-tls/1", "h2"]), size)
    assert hello_bytes_needed(hello) == len(hello)
    for cut in (0, 3, 5, size + 5, len(hello) - 1):
        assert hello_bytes_needed(hello[:cut]) > cut
    assert read_client_hello(hello) == ClientHello("shop.test", (b"acme-tls/1", b"h2"))


@pytest.mark.parametrize("data", [
    b"GET / HTTP/1.1\r\nHost: shop.test\r\n\r\n",
    b"\x16\x03\x01\x00\x00",                      # an empty record
    b"\x16\x03\x01\x00\x03\x01\x00\x00",          # a hello header cut by its record
    b"\x16\x03\x01\x00\x04\x02\x00\x00\x00",      # a ServerHello
    b"\x17\x03\x03\x00\x10" + bytes(16),          # application data
    b"\x16\x03\x01\x40\x01" + bytes(16385),       # a record longer than TLS allows
    b"\x16\x03\x01\x00\x04\x01\x01\x00\x00",      # a hello longer than MAX_HELLO_BYTES
])
def test_what_is_no_readable_hello_is_none(data):
    assert hello_bytes_needed(data) is None
    assert read_client_hello(data) is None


def test_inconsistent_lengths_inside_a_hello_are_refused():
    hello = bytearray(python_hello("shop.test", ["acme-tls/1"]))
    tail = hello.index(b"acme-tls/1")
    hello[tail - 1] = 200  # the protocol name's length runs past its list
    assert read_client_hello(bytes(hello)) is None


def test_a_repeated_extension_is_refused():
    body = python_hello("shop.test", ["acme-tls/1"])[9:]  # the hello's body: after record and message headers
    alpn = b"\x00\x10\x00\x0d\x00\x0b\x0aacme-tls/1"
    at = body.index(alpn)
    session = body[34]
    suites = int.from_bytes(body[35 + session:37 + session], "big")
    length_at = 38 + session + suites + body[37 + session + suites]  # the extensions block's length
    extensions = int.from_bytes(body[length_at:length_at + 2], "big") + len(alpn)
    doubled = body[:length_at] + extensions.to_bytes(2, "big") + body[length_at + 2:at] + alpn + body[at:]
    message = b"\x01" + len(doubled).to_bytes(3, "big") + doubled
    record = b"\x16\x03\x01" + len(message).to_bytes(2, "big") + message
    assert hello_bytes_needed(record) == len(record)
    assert read_client_hello(record) is None
    assert read_client_hello(record.replace(alpn, alpn.replace(b"\x00\x10", b"\x7f\x10", 1), 1)) is not None


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=600))
def test_arbitrary_bytes_never_raise(data):
    needed = hello_bytes_needed(data)
    assert needed is None or needed > 0
    read_client_hello(data)
    read_client_hello(b"\x16\x03\x01" + len(data).to_bytes(2, "big") + data)


@settings(max_examples=400, deadline=None)
@given(st.data())
def test_a_mangled_real_hello_never_raises(data):
    hello = bytearray(python_hello("shop.test", ["acme-tls/1", "h2"]))
    for _ in range(data.draw(st.integers(1, 8))):
        hello[data.draw(st.integers(0, len(hello) - 1))] = data.draw(st.integers(0, 255))
    result = read_client_hello(bytes(hello))
    assert result is None or isinstance(result, ClientHello)


def test_max_hello_bytes_is_above_any_real_hello():
    assert len(python_hello("shop.test", ["acme-tls/1"])) < MAX_HELLO_BYTES
