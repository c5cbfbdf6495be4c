"""systemd's sd_notify protocol: one datagram to $NOTIFY_SOCKET, when it is set."""

import os
import socket
import time


def sd_notify(*fields: str) -> None:
    """Send e.g. ``sd_notify("READY=1")``; does nothing outside systemd."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return
    if address.startswith("@"):
        address = "\0" + address[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        try:
            sock.connect(address)
            sock.sendall("\n".join(fields).encode())
        except OSError:
            pass


def monotonic_usec() -> str:
    """The MONOTONIC_USEC field systemd wants with RELOADING=1."""
    return f"MONOTONIC_USEC={time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000}"
