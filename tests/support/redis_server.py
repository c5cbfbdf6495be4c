"""Real redis-server processes for the tests: single server (password, TLS), a 3-node cluster, a sentinel.

Every server listens on 127.0.0.1 on a port the OS chose, keeps nothing on
disk (``--save "" --appendonly no``) and runs in its own process group.
``close()`` (or leaving the ``with`` block) stops it, also when the test
failed; a frozen (SIGSTOP) server is thawed first so it can exit.

With ``tls=True`` the server only accepts TLS, with a self-signed
certificate for 127.0.0.1 made by the openssl command (``ca_file``).

Faults a test can inject: ``kill()`` (SIGKILL, the port is closed at once),
``freeze()``/``thaw()`` (SIGSTOP/SIGCONT: connections stay open and nothing
is answered), and ``start()`` again on the same port after a kill.
"""

import os
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
from pathlib import Path

from tests.support.certs import self_signed_certificate
from tests.support.ports import free_port
from tests.support.wait import wait_until

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"
REDIS_CLI = shutil.which("redis-cli") or "/usr/bin/redis-cli"


def _answers(port: int, tls: ssl.SSLContext | None = None) -> bool:
    """True when something on ``port`` answers PING with any RESP reply (+PONG, or -NOAUTH)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as raw:
            with (tls.wrap_socket(raw, server_hostname="127.0.0.1") if tls else raw) as s:
                s.sendall(b"PING\r\n")
                return s.recv(64)[:1] in (b"+", b"-")
    except OSError:
        return False


def _stop_group(process: subprocess.Popen | None) -> None:
    """Stop a server's process group: SIGTERM, then SIGKILL after 5 s."""
    if process is not None and process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=5)


class RedisServer:
    """One redis-server process. ``password`` protects the default user; ``cluster`` enables cluster mode."""

    def __init__(self, password: str | None = None, cluster: bool = False, tls: bool = False,
                 cluster_node_timeout_ms: int = 2000) -> None:
        self.password = password
        self.cluster = cluster
        self.cluster_node_timeout_ms = cluster_node_timeout_ms
        self.tls = tls
        self.port = free_port()
        self.bus_port = free_port() if cluster else 0
        self._dir = tempfile.mkdtemp(prefix="fastgate-redis-")
        self.process: subprocess.Popen | None = None
        self._frozen = False

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"{'rediss' if self.tls else 'redis'}://{auth}127.0.0.1:{self.port}/0"

    @property
    def ca_file(self) -> str:
        """The self-signed certificate of a TLS server, to trust in clients."""
        return str(Path(self._dir) / "server.crt")

    def start(self) -> "RedisServer":
        """Start (or restart after ``kill``) on the same port; return when it answers PING."""
        args = [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1",
                "--save", "", "--appendonly", "no", "--dir", self._dir, "--daemonize", "no",
                "--logfile", str(Path(self._dir) / "redis.log")]
        if self.password:
            args += ["--requirepass", self.password]
        tls_context = None
        if self.tls:
            if not Path(self.ca_file).exists():
                self_signed_certificate(self._dir)
            args[1:3] = ["--port", "0", "--tls-port", str(self.port)]
            args += ["--tls-cert-file", self.ca_file, "--tls-key-file", str(Path(self._dir) / "server.key"),
                     "--tls-ca-cert-file", self.ca_file, "--tls-auth-clients", "no"]
            tls_context = ssl.create_default_context(cafile=self.ca_file)
        if self.cluster:
            args += ["--cluster-enabled", "yes", "--cluster-port", str(self.bus_port),
                     "--cluster-config-file", str(Path(self._dir) / "nodes.conf"),
                     "--cluster-node-timeout", str(self.cluster_node_timeout_ms)]
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                        start_new_session=True)
        try:
            wait_until(lambda: self.process.poll() is None and _answers(self.port, tls_context),
                       f"redis-server answers on port {self.port}", timeout_s=10.0)
        except AssertionError:
            self.close()
            raise
        return self

    def kill(self) -> None:
        """SIGKILL the server; its port refuses connections from now on."""
        self.thaw()
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)

    def freeze(self) -> None:
        """SIGSTOP: the server keeps its sockets open but answers nothing until ``thaw``."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGSTOP)
            self._frozen = True

    def thaw(self) -> None:
        if self._frozen and self.process is not None:
            os.killpg(self.process.pid, signal.SIGCONT)
            self._frozen = False

    def cli(self, *args: str) -> str:
        """Run ``redis-cli`` against this server and return its output."""
        auth = ["--no-auth-warning", "-a", self.password] if self.password else []
        tls = ["--tls", "--cacert", self.ca_file] if self.tls else []
        return subprocess.run([REDIS_CLI, "-p", str(self.port), *auth, *tls, *args], capture_output=True,
                              text=True, timeout=10, check=True).stdout

    def command_calls(self, command: str) -> int:
        """How many times ``command`` (lower case) was called on this server (INFO commandstats)."""
        for line in self.cli("info", "commandstats").split():
            if line.startswith(f"cmdstat_{command}:"):
                return int(line.split("calls=", 1)[1].split(",", 1)[0])
        return 0

    def close(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL after 5 s) and remove its directory."""
        self.thaw()
        _stop_group(self.process)
        shutil.rmtree(self._dir, ignore_errors=True)

    def __enter__(self) -> "RedisServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


class RedisClusterServers:
    """redis-server processes joined into one cluster, all slots covered: ``masters`` primaries, each
    with ``replicas`` replicas (``--cluster-replicas``). A primary that stops answering for
    ``node_timeout_ms`` is failed over to its replica by the others. ``password`` protects every
    node's default user (no replicas then: they would need masterauth too)."""

    def __init__(self, masters: int = 3, replicas: int = 0, node_timeout_ms: int = 2000,
                 password: str | None = None) -> None:
        self.replicas = replicas
        self.password = password
        self.nodes = [RedisServer(password, cluster=True, cluster_node_timeout_ms=node_timeout_ms)
                      for _ in range(masters * (1 + replicas))]

    @property
    def addresses(self) -> list[str]:
        return [f"127.0.0.1:{node.port}" for node in self.nodes]

    def start(self) -> "RedisClusterServers":
        try:
            for node in self.nodes:
                node.start()
            auth = ["--no-auth-warning", "-a", self.password] if self.password else []
            subprocess.run([REDIS_CLI, *auth, "--cluster", "create", *self.addresses,
                            "--cluster-replicas", str(self.replicas), "--cluster-yes"],
                           capture_output=True, text=True, timeout=30, check=True)
            self.wait_ok()
        except BaseException:
            self.close()
            raise
        return self

    def live(self) -> list[RedisServer]:
        return [node for node in self.nodes if node.process is not None and node.process.poll() is None]

    def wait_ok(self, timeout_s: float = 15.0) -> None:
        """Until every live node reports cluster_state:ok (all slots served)."""
        for node in self.live():
            wait_until(lambda: "cluster_state:ok" in node.cli("cluster", "info"),
                       f"cluster node {node.port} reports cluster_state:ok", timeout_s=timeout_s)

    def _masters(self) -> list[tuple[RedisServer, str, list[str]]]:
        """The live primaries as a live node sees the cluster now: (server, node id, slot ranges as text)."""
        by_port = {node.port: node for node in self.live()}
        found = []
        for line in self.live()[0].cli("cluster", "nodes").splitlines():
            fields = line.split()
            port = int(fields[1].split("@")[0].rsplit(":", 1)[1])
            flags = fields[2].split(",")
            if "master" in flags and "fail" not in flags and port in by_port:
                found.append((by_port[port], fields[0], [f for f in fields[8:] if not f.startswith("[")]))
        return found

    def node_id(self, node: RedisServer) -> str:
        return node.cli("cluster", "myid").strip()

    def owner_of(self, key: str) -> RedisServer:
        """The primary that serves ``key`` now (as a live node sees it)."""
        slot = int(self.live()[0].cli("cluster", "keyslot", key))
        for node, ranges in self.slot_ranges().items():
            if any(slot in part for part in ranges):
                return node
        raise AssertionError(f"no live primary serves slot {slot}")

    def primaries(self) -> list[RedisServer]:
        return [node for node, _, _ in self._masters()]

    def slot_ranges(self) -> dict[RedisServer, list[range]]:
        """The slots each live primary serves now."""
        return {node: [_slot_range(text) for text in ranges] for node, _, ranges in self._masters()}

    def replica_of(self, primary: RedisServer) -> RedisServer:
        """A live replica of ``primary``."""
        primary_id = self.node_id(primary)
        for line in primary.cli("cluster", "nodes").splitlines():
            fields = line.split()
            if fields[3] == primary_id and "slave" in fields[2].split(","):
                port = int(fields[1].split("@")[0].rsplit(":", 1)[1])
                return next(node for node in self.live() if node.port == port)
        raise AssertionError(f"primary {primary.port} has no replica")

    def start_migration(self, slot: int, source: RedisServer, target: RedisServer, keys: list[str]) -> None:
        """Mark ``slot`` MIGRATING from ``source`` to ``target`` (IMPORTING there) and move ``keys`` of it
        to ``target``: ``source`` answers ASK for them, and for any other key of the slot it lacks."""
        target.cli("cluster", "setslot", str(slot), "importing", self.node_id(source))
        source.cli("cluster", "setslot", str(slot), "migrating", self.node_id(target))
        if keys:
            source.cli("migrate", "127.0.0.1", str(target.port), "", "0", "5000", "keys", *keys)

    def assign_slot(self, slot: int, owner: RedisServer) -> None:
        """End a migration (or move an empty slot): every live primary learns that ``owner`` serves
        ``slot``, the others answer MOVED for it."""
        for node in [owner, *[node for node in self.primaries() if node is not owner]]:
            node.cli("cluster", "setslot", str(slot), "node", self.node_id(owner))

    def close(self) -> None:
        for node in self.nodes:
            node.close()

    def __enter__(self) -> "RedisClusterServers":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


def _slot_range(text: str) -> range:
    """"0-5460" or "42", as in CLUSTER NODES."""
    low, _, high = text.partition("-")
    return range(int(low), int(high or low) + 1)


class RedisSentinel:
    """A redis-server in sentinel mode that monitors ``primary`` as the service ``service``."""

    def __init__(self, primary: RedisServer, service: str = "mymaster") -> None:
        self.primary = primary
        self.service = service
        self.port = free_port()
        self._dir = tempfile.mkdtemp(prefix="fastgate-sentinel-")
        self.process: subprocess.Popen | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> "RedisSentinel":
        config = Path(self._dir) / "sentinel.conf"
        config.write_text(f"port {self.port}\nbind 127.0.0.1\ndir {self._dir}\n"
                          f"sentinel monitor {self.service} 127.0.0.1 {self.primary.port} 1\n")
        self.process = subprocess.Popen([REDIS_SERVER, str(config), "--sentinel"], stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL, start_new_session=True)
        try:
            wait_until(lambda: self.process.poll() is None and _answers(self.port),
                       f"redis sentinel answers on port {self.port}", timeout_s=10.0)
        except AssertionError:
            self.close()
            raise
        return self

    def close(self) -> None:
        _stop_group(self.process)
        shutil.rmtree(self._dir, ignore_errors=True)

    def __enter__(self) -> "RedisSentinel":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()
