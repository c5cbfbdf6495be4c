"""A TLS listener socket in a worker: accept, handshake, then serve the connection as HTTP/1.1.

Theory of operation
-------------------
uvloop's TLS server (``create_server(ssl=...)``) drops a failed handshake
without a word (it logs it only in debug mode, and tells no callback), so
failures could be neither counted nor told apart. The worker therefore
accepts a TLS listener's socket itself: ``TlsAcceptor`` watches the
listening socket (``add_reader``), accepts what is queued, and hands each new
socket with the listener's context to ``loop.connect_accepted_socket`` in a
task. That is uvloop's own TLS transport, the one ``create_server`` makes, so
served bytes cost the same; it returns once the handshake is over, or raises
why it failed:

- success: uvloop has already called the ClientConnection's
  ``connection_made`` with the TLS transport (before any request byte is
  read); the task counts the handshake (version, resumed or not) and ends;
- failure: counted by reason (tls/failures.py: protocol_version,
  no_shared_cipher, unknown_ca, timeout, ...) and nothing else: a client
  with a bad handshake costs no error-log line, and its ClientConnection,
  never connected, is dropped.

The SNI callback, ALPN and versions live in the context (tls/server.py).
One task per handshake is cheap next to the handshake's own cryptography.
``handshakes`` holds the tasks in flight, for the worker to cancel when it
stops. ``close`` stops accepting (the socket's queue stays with the master,
for the next generation), like ``asyncio.Server.close``.
"""

import asyncio
import errno
import socket

from fastgate.observe.errorlog import log
from fastgate.tls.failures import CLOSED, failure_reason
from fastgate.tls.server import ServerTls

_ACCEPT_BATCH = 64
"""Most connections accepted per wake-up of one socket, so one busy listener cannot starve the loop."""
_ACCEPT_PAUSE_S = 1.0
"""Pause of a socket's accepting after the process ran out of file descriptors or memory."""
_OUT_OF_RESOURCES = frozenset((errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM))


class TlsAcceptor:
    """Accepts one TLS listener slot socket in a worker and runs the handshakes."""

    __slots__ = ("loop", "sock", "tls", "make_connection", "metrics", "listener", "handshakes", "accepting")

    def __init__(self, loop: asyncio.AbstractEventLoop, sock: socket.socket, tls: ServerTls, make_connection,
                 metrics, listener: int, handshakes: set) -> None:
        self.loop = loop
        self.sock = sock
        self.tls = tls
        self.make_connection = make_connection
        """Makes the protocol that serves the connection once the handshake is over."""
        self.metrics = metrics
        self.listener = listener
        """The listener's index in the config (its metrics series)."""
        self.handshakes = handshakes
        """The worker's handshake tasks in flight."""
        self.accepting = False

    def start(self) -> None:
        self.sock.setblocking(False)
        self.loop.add_reader(self.sock.fileno(), self._accept)
        self.accepting = True

    def close(self) -> None:
        """Stop accepting; handshakes under way go on."""
        if self.accepting:
            self.accepting = False
            self.loop.remove_reader(self.sock.fileno())

    def _resume(self) -> None:
        if not self.accepting:
            return
        self.loop.add_reader(self.sock.fileno(), self._accept)

    def _accept(self) -> None:
        for _ in range(_ACCEPT_BATCH):
            try:
                conn, _ = self.sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                if exc.errno in _OUT_OF_RESOURCES:
                    log.error("cannot accept TLS connections: %s; pausing this socket for %.0fs",
                              exc.strerror, _ACCEPT_PAUSE_S)
                    self.loop.remove_reader(self.sock.fileno())
                    self.loop.call_later(_ACCEPT_PAUSE_S, self._resume)
                    return
                continue  # ECONNABORTED and the like: that client is gone, take the next
            conn.setblocking(False)
            task = self.loop.create_task(self._handshake(conn))
            self.handshakes.add(task)
            task.add_done_callback(self.handshakes.discard)

    async def _handshake(self, conn: socket.socket) -> None:
        tls = self.tls
        try:
            transport, _ = await self.loop.connect_accepted_socket(
                self.make_connection, conn, ssl=tls.context, ssl_handshake_timeout=tls.handshake_timeout_s)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self.metrics.count_tls_failure(self.listener, failure_reason(exc))
            return
        ssl_object = transport.get_extra_info("ssl_object")
        if ssl_object is None:  # the connection was lost without an error before the handshake ended
            self.metrics.count_tls_failure(self.listener, CLOSED)
            return
        self.metrics.count_tls_handshake(self.listener, ssl_object.version(), ssl_object.session_reused)
