"""A real nats-server process for the tests, and a real subscriber (nats-py) that collects messages.

The server listens on 127.0.0.1 on a port the OS chose (kept across a
``kill()`` and ``start()``), optionally with a user and password, and with
``tls=True`` only over TLS, with a self-signed certificate for 127.0.0.1
(``ca_file``). ``close()``
(or leaving the ``with`` block) stops it by PID, also when the test failed.

``NatsSubscriber`` runs nats-py on its own event loop in a thread, so a
synchronous test can make HTTP requests while messages arrive.
"""

import asyncio
import shutil
import socket
import ssl
import subprocess
import tempfile
import threading
from pathlib import Path

import msgspec
import nats

from tests.support.certs import self_signed_certificate
from tests.support.ports import free_port
from tests.support.wait import wait_until

NATS_SERVER = shutil.which("nats-server") or "/usr/sbin/nats-server"


def _greets(port: int) -> bool:
    """True when a NATS server on ``port`` sends its INFO line to a new connection."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
            return s.recv(5) == b"INFO "
    except OSError:
        return False


class NatsServer:
    def __init__(self, user: str = "", password: str = "", tls: bool = False) -> None:
        self.user = user
        self.password = password
        self.tls = tls
        self.port = free_port()
        self._dir = tempfile.mkdtemp(prefix="fastgate-nats-")
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        auth = f"{self.user}:{self.password}@" if self.user else ""
        return f"{'tls' if self.tls else 'nats'}://{auth}127.0.0.1:{self.port}"

    @property
    def ca_file(self) -> str:
        """The self-signed certificate of a TLS server, to trust in clients."""
        return str(Path(self._dir) / "server.crt")

    def start(self) -> "NatsServer":
        """Start (or restart after ``kill``) on the same port; return when it greets clients."""
        args = [NATS_SERVER, "-a", "127.0.0.1", "-p", str(self.port), "-l", str(Path(self._dir) / "nats.log")]
        if self.user:
            args += ["--user", self.user, "--pass", self.password]
        if self.tls:
            if not Path(self.ca_file).exists():
                self_signed_certificate(self._dir)
            args += ["--tls", "--tlscert", self.ca_file, "--tlskey", str(Path(self._dir) / "server.key")]
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_until(lambda: self.process.poll() is None and _greets(self.port),
                       f"nats-server greets on port {self.port}", timeout_s=10.0)
        except AssertionError:
            self.close()
            raise
        return self

    def kill(self) -> None:
        """SIGKILL the server; its port refuses connections from now on."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)

    def close(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL after 5 s) and remove its directory."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.kill()
        shutil.rmtree(self._dir, ignore_errors=True)

    def __enter__(self) -> "NatsServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


class NatsSubscriber:
    """Subscribes to ``subject`` and keeps every message's JSON payload, decoded, in ``messages``."""

    def __init__(self, url: str, subject: str, ca_file: str = "") -> None:
        self.url = url
        self.subject = subject
        self._tls = ssl.create_default_context(cafile=ca_file) if ca_file else None
        self.messages: list[dict] = []
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="nats-subscriber", daemon=True)
        self._client: nats.NATS | None = None

    def start(self) -> "NatsSubscriber":
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._subscribe(), self._loop).result(timeout=10)
        return self

    async def _subscribe(self) -> None:
        self._client = await nats.connect(self.url, allow_reconnect=False, tls=self._tls)

        async def keep(msg) -> None:
            self.messages.append(msgspec.json.decode(msg.data))

        await self._client.subscribe(self.subject, cb=keep)
        await self._client.flush()  # the server knows the subscription before start() returns

    def sync(self) -> None:
        """Return once every message the server had for this subscriber when called has arrived."""
        assert self._client is not None
        asyncio.run_coroutine_threadsafe(self._client.flush(), self._loop).result(timeout=10)

    def close(self) -> None:
        if self._client is not None:
            future = asyncio.run_coroutine_threadsafe(self._client.close(), self._loop)
            try:
                future.result(timeout=10)
            except Exception:
                pass  # the server may be gone already
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()

    def __enter__(self) -> "NatsSubscriber":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()
