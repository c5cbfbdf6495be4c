"""pebble, Let's Encrypt's ACME test server (Debian package ``pebble``), with pebble-challtestsrv as
its DNS server, so that every name a test orders resolves to 127.0.0.1.

``Pebble`` writes pebble's config (its own HTTPS certificate from a trustme CA, the HTTP-01 port
it validates on: the gateway's plain listener, the TLS-ALPN-01 port: ``tls_port``, the
certificates' validity), starts
``pebble-challtestsrv`` (DNS only) and ``pebble -dnsserver``, waits until the directory answers,
and stops both by PID. ``root_pem()`` is the root that signs what pebble issues (a new one per run),
from the management interface's /roots/0.
"""

import json
import os
import signal
import ssl
import subprocess
from pathlib import Path

import httpx
import trustme

from tests.support.ports import free_port
from tests.support.wait import wait_until


class Pebble:
    def __init__(self, directory: Path, http_port: int, validity_s: int = 3600, env: dict | None = None) -> None:
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        self.http_port = http_port
        """Where pebble sends HTTP-01 validation requests (the gateway's plain listener)."""
        self.tls_port = free_port()
        """Where pebble makes TLS-ALPN-01 validation handshakes (the gateway's TLS listener)."""
        self.validity_s = validity_s
        self.env = {"PEBBLE_VA_NOSLEEP": "1", "PEBBLE_WFE_NONCEREJECT": "0", "PEBBLE_AUTHZREUSE": "0",
                    **(env or {})}
        self.port = self.management_port = self.dns_port = self.challtest_port = 0
        self.procs: list[subprocess.Popen] = []
        self.ca_file = str(self.dir / "pebble-https-ca.pem")
        """The CA of pebble's own HTTPS (the gateway's directory_ca_file)."""

    @property
    def directory_url(self) -> str:
        return f"https://127.0.0.1:{self.port}/dir"

    def start(self) -> "Pebble":
        ca = trustme.CA()
        leaf = ca.issue_cert("127.0.0.1", "localhost")
        ca.cert_pem.write_to_path(self.ca_file)
        leaf.private_key_pem.write_to_path(str(self.dir / "pebble-key.pem"))
        leaf.cert_chain_pems[0].write_to_path(str(self.dir / "pebble-cert.pem"))
        self.port, self.management_port = free_port(), free_port()
        self.dns_port, self.challtest_port = free_port(), free_port()
        config = {"pebble": {
            "listenAddress": f"127.0.0.1:{self.port}", "managementListenAddress": f"127.0.0.1:{self.management_port}",
            "certificate": str(self.dir / "pebble-cert.pem"), "privateKey": str(self.dir / "pebble-key.pem"),
            "httpPort": self.http_port, "tlsPort": self.tls_port, "ocspResponderURL": "",
            "externalAccountBindingRequired": False, "certificateValidityPeriod": self.validity_s}}
        (self.dir / "pebble.json").write_text(json.dumps(config))
        self._spawn("challtestsrv", ["pebble-challtestsrv", "-dns01", f"127.0.0.1:{self.dns_port}", "-http01", "",
                                     "-https01", "", "-tlsalpn01", "", "-management",
                                     f"127.0.0.1:{self.challtest_port}", "-defaultIPv4", "127.0.0.1",
                                     "-defaultIPv6", ""])
        self._spawn("pebble", ["pebble", "-config", str(self.dir / "pebble.json"), "-strict=false",
                               "-dnsserver", f"127.0.0.1:{self.dns_port}"], self.env)
        wait_until(self._answers, "pebble's directory answers")
        return self

    def _spawn(self, name: str, command: list[str], env: dict | None = None) -> None:
        with open(self.dir / f"{name}.log", "ab") as log:
            self.procs.append(subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log,
                                               stderr=subprocess.STDOUT, env={**os.environ, **(env or {})}))

    def _answers(self) -> bool:
        for proc in self.procs:
            if proc.poll() is not None:
                raise AssertionError(f"{proc.args[0]} exited with {proc.returncode}: {self.log_text()}")
        try:
            return httpx.get(self.directory_url, verify=self._trust(), timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def _trust(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=self.ca_file)

    def root_pem(self) -> bytes:
        """The root CA that signs the certificates this pebble issues."""
        response = httpx.get(f"https://127.0.0.1:{self.management_port}/roots/0", verify=self._trust(), timeout=10)
        response.raise_for_status()
        return response.content

    def resolve_to(self, ipv4: str) -> None:
        """From now on every name resolves to ``ipv4`` (pebble-challtestsrv's default A answer)."""
        httpx.post(f"http://127.0.0.1:{self.challtest_port}/set-default-ipv4", json={"ip": ipv4},
                   timeout=10).raise_for_status()

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)

    def log_text(self) -> str:
        return "\n".join(p.read_text(errors="replace") for p in sorted(self.dir.glob("*.log")))
