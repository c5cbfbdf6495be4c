"""Under systemd: the master tells READY, RELOADING (then READY again) and STOPPING via $NOTIFY_SOCKET."""

import signal
import socket

import pytest


@pytest.fixture
def notify_socket(tmp_path, monkeypatch):
    path = str(tmp_path / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(15)
    monkeypatch.setenv("NOTIFY_SOCKET", path)
    yield sock
    sock.close()


def next_message_with(sock: socket.socket, field: str) -> list[str]:
    """Read datagrams until one holds ``field``; return that one's lines."""
    while True:
        lines = sock.recv(4096).decode().splitlines()
        if field in lines:
            return lines


def test_ready_reloading_stopping(gateways, notify_socket):
    gw = gateways.start({}, workers=2)
    ready = next_message_with(notify_socket, "READY=1")
    assert f"MAINPID={gw.pid}" in ready

    gw.signal(signal.SIGHUP)
    reloading = next_message_with(notify_socket, "RELOADING=1")
    assert any(line.startswith("MONOTONIC_USEC=") for line in reloading)
    next_message_with(notify_socket, "READY=1")

    gw.signal(signal.SIGTERM)
    next_message_with(notify_socket, "STOPPING=1")
    assert gw.wait_exit() == 0
