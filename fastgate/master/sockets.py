"""Listening sockets: one SO_REUSEPORT socket per worker slot, owned by the master.

The master keeps every slot socket open for as long as its listener is in
the config, so the kernel's accept queues survive worker deaths and
reloads: a new worker inherits the same socket (and queue) by fork. When
the worker count shrinks, no slot is closed; each worker serves several
slots (worker k serves slots k, k+N, k+2N, ...), so no queued connection is
ever dropped by a reload.
"""

import socket

from fastgate.config.schema import Listener


class ListenerSockets:
    """The slot sockets of one listener address."""

    def __init__(self, listener: Listener, host: str, port: int) -> None:
        self.listener = listener
        self.host = host
        self.port = port
        self.slots: list[socket.socket] = []

    @property
    def key(self) -> tuple[str, int]:
        return self.host, self.port

    def ensure_slots(self, count: int) -> None:
        """Grow to at least ``count`` slot sockets (never shrinks)."""
        while len(self.slots) < count:
            self.slots.append(_bind(self.host, self.port, self.listener.backlog))

    def slots_of(self, worker: int, workers: int) -> list[socket.socket]:
        return self.slots[worker::workers]

    def close(self) -> None:
        for sock in self.slots:
            sock.close()
        self.slots.clear()


def _bind(host: str, port: int, backlog: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind((host, port))
        sock.listen(backlog)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock
