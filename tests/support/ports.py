"""Ports and peers chosen by the OS: a free port, a refusing port, a listener that never accepts."""

import socket


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (bound to port 0, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def refused_port() -> int:
    """A port on which nothing listens, so connecting is refused."""
    return free_port()


class BlackholeListener:
    """A listening socket whose accept queue is full: new SYNs are dropped and connects hang.

    This gives a connect timeout on loopback without any routing tricks: the
    socket listens with backlog 0, is never accepted from, and is filled with
    connections until one more connect no longer completes.
    """

    def __init__(self) -> None:
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(0)
        self.port = self.listener.getsockname()[1]
        self._fillers: list[socket.socket] = []
        for _ in range(16):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.settimeout(0.5)
            try:
                s.connect(("127.0.0.1", self.port))
            except OSError:
                s.close()
                return
            self._fillers.append(s)
        self.close()
        raise RuntimeError("could not fill the accept queue of a backlog-0 listener")

    def close(self) -> None:
        for s in self._fillers:
            s.close()
        self.listener.close()

    def __enter__(self) -> "BlackholeListener":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
