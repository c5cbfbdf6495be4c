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

A listener whose ACME certificate is validated by TLS-ALPN-01 (``answers``)
first waits for the ClientHello and peeks at it (transport/hello_peek.py),
all within the handshake timeout: a hello that offers ALPN ``acme-tls/1``
and nothing else, for a name with a pending challenge, gets the challenge's
own context (acme/tls_alpn_answers.py), and the connection is closed once
the handshake is done and counted (the CA only looks at the certificate); every other connection is handed on exactly as without it.
The cost, on such listeners only: one recv(MSG_PEEK) per connection (and a
wait for readability when the hello has not arrived yet) and a substring
search of the hello for ``acme-tls/1``; the hello is parsed only when that
is found. Listeners without it peek at nothing.
``handshakes`` holds the tasks in flight, for the worker to cancel when it
stops. ``close`` stops accepting (the socket's queue stays with the master,
for the next generation), like ``asyncio.Server.close``.
"""

import asyncio
import errno
import socket

from fastgate.acme.tls_alpn_answers import ACME_TLS_ALPN, TlsAlpnAnswers
from fastgate.observe.errorlog import log
from fastgate.tls.failures import CLOSED, TIMEOUT, failure_reason
from fastgate.tls.server import ServerTls
from fastgate.transport.hello_peek import peek_client_hello
from fastgate.wire.tls_hello import read_client_hello

_ACCEPT_BATCH = 64
"""Most connections accepted per wake-up of one socket, so one busy listener cannot starve the loop."""
_ACCEPT_PAUSE_S = 1.0
"""Pause of a socket's accepting after the process ran out of file descriptors or memory."""
_OUT_OF_RESOURCES = frozenset((errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM))


class TlsAcceptor:
    """Accepts one TLS listener slot socket in a worker and runs the handshakes."""

    __slots__ = ("loop", "sock", "tls", "make_connection", "metrics", "listener", "handshakes", "answers",
                 "accepting")

    def __init__(self, loop: asyncio.AbstractEventLoop, sock: socket.socket, tls: ServerTls, make_connection,
                 metrics, listener: int, handshakes: set, answers: TlsAlpnAnswers | None = None) -> None:
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
        self.answers = answers
        """The listener's TLS-ALPN-01 answers; None: no hello is looked at."""
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
        context, make_connection, timeout_s = tls.context, self.make_connection, tls.handshake_timeout_s
        if self.answers is not None:
            deadline = self.loop.time() + timeout_s
            try:
                challenge = await self._challenge_context(conn, timeout_s)
            except TimeoutError:
                challenge = None
            except asyncio.CancelledError:
                conn.close()
                raise
            timeout_s = deadline - self.loop.time()
            if timeout_s <= 0:  # no whole ClientHello within the handshake timeout
                conn.close()
                self.metrics.count_tls_failure(self.listener, TIMEOUT)
                return
            if challenge is not None:
                context, make_connection = challenge, ChallengeAnswered
        try:
            transport, _ = await self.loop.connect_accepted_socket(
                make_connection, conn, ssl=context, ssl_handshake_timeout=timeout_s)
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
        if make_connection is ChallengeAnswered:  # the CA has seen the certificate: nothing more is said
            transport.close()

    async def _challenge_context(self, conn: socket.socket, timeout_s: float):
        """The TLS-ALPN-01 challenge's context when ``conn``'s ClientHello is the CA's validation
        handshake for a pending challenge, else None. Raise TimeoutError past ``timeout_s``."""
        data = await peek_client_hello(self.loop, conn, timeout_s)
        if ACME_TLS_ALPN not in data:  # nearly every connection: no parsing
            return None
        hello = read_client_hello(data)
        return self.answers.context_for(hello) if hello is not None else None


class ChallengeAnswered(asyncio.Protocol):
    """A TLS-ALPN-01 validation connection: ignores what it is sent; the acceptor closes it once
    the handshake is counted."""
