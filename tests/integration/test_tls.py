"""TLS on both sides: listeners terminate TLS (SNI picks the certificate, versions, redirect, reload,
failures counted, sessions resumed across workers), and upstreams may be HTTPS (verification, SNI,
client certificates), health checks included.

Certificates come from trustme CAs; clients are curl, httpx, ``openssl s_client`` and Python's ssl.
"""

import datetime
import json
import shutil
import signal
import socket
import ssl
import subprocess
import time
from pathlib import Path

import httpx
import pytest
import trustme
from cryptography import x509

from tests.support.certs import write_leaf
from tests.support.gateway import Gateway, run_cli
from tests.support.metrics import admin_get, settled, value
from tests.support.ports import free_port
from tests.support.upstream import Upstream
from tests.support.wait import wait_until

READY = "/__fastgate_ready"


# -- certificates ---------------------------------------------------------------

class Pki:
    """Certificates of one test module, as files in ``dir``."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.ca = trustme.CA()
        self.write_pair("site", self.ca.issue_cert("site.test"))
        self.write_pair("wild", self.ca.issue_cert("*.wild.test"))
        self.ca.cert_pem.write_to_path(str(directory / "ca.pem"))
        # the origins' side: a CA the gateway may trust, one it does not, and one for client certificates
        self.origin_ca = trustme.CA()
        self.origin_ca.cert_pem.write_to_path(str(directory / "origin-ca.pem"))
        self.write_pair("origin-ip", self.origin_ca.issue_cert("127.0.0.1"))
        self.write_pair("origin-name", self.origin_ca.issue_cert("origin.test"))
        self.rogue_ca = trustme.CA()
        self.write_pair("rogue", self.rogue_ca.issue_cert("127.0.0.1"))
        self.client_ca = trustme.CA()
        self.client_ca.cert_pem.write_to_path(str(directory / "client-ca.pem"))
        self.write_pair("client", self.client_ca.issue_cert("gateway.client.test"))

    def write_pair(self, name: str, cert: trustme.LeafCert) -> None:
        write_leaf(self.dir, name, cert)

    def path(self, name: str) -> str:
        return str(self.dir / name)

    def client_context(self, **settings) -> ssl.SSLContext:
        """A client context that trusts the gateway's CA."""
        context = ssl.create_default_context(cafile=self.path("ca.pem"))
        for name, setting in settings.items():
            setattr(context, name, setting)
        return context

    def origin_context(self, pair: str, client_ca: bool = False) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.path(f"{pair}.pem"), self.path(f"{pair}.key"))
        if client_ca:
            context.verify_mode = ssl.CERT_REQUIRED
            context.load_verify_locations(self.path("client-ca.pem"))
        return context


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> Pki:
    return Pki(tmp_path_factory.mktemp("pki"))


# -- a gateway with a TLS listener -----------------------------------------------------

class TlsGateway(Gateway):
    """The test gateway (its plain listener answers readiness) with a TLS listener named "secure" on
    ``tls_port`` and, with ``redirect``, a plain listener on ``redirect_port`` that redirects to it."""

    def __init__(self, directory: Path, config: dict, tls: dict, workers: int, redirect: bool) -> None:
        super().__init__(directory, config, workers)
        self.tls = tls
        self.redirect = redirect
        self.tls_port = self.redirect_port = 0

    def start(self) -> "TlsGateway":
        self.tls_port, self.redirect_port = free_port(), free_port()
        return super().start()

    def full_config(self, config: dict) -> dict:
        full = super().full_config(config)
        full["listeners"] = [*full["listeners"],
                             {"address": f"127.0.0.1:{self.tls_port}", "name": "secure", "tls": self.tls}]
        if self.redirect:
            full["listeners"].append({"address": f"127.0.0.1:{self.redirect_port}", "redirect_https": self.tls_port})
        return full

    def https(self, host: str, path: str = "/") -> str:
        return f"https://{host}:{self.tls_port}{path}"


def start_tls_gateway(gateways, pki: Pki, config: dict | None = None, tls: dict | None = None, workers: int = 1,
                      redirect: bool = False, files: tuple[str, ...] = ("site", "wild")) -> TlsGateway:
    """A TLS gateway whose certificate files are copied next to its config (and named relatively)."""
    gw = TlsGateway(gateways.base_dir / f"gw{len(gateways.started)}", config or {},
                    tls or {"certificates": [{"cert": "site.pem", "key": "site.key"},
                                             {"cert": "wild.pem", "key": "wild.key"}]}, workers, redirect)
    for name in files:
        for ext in ("pem", "key"):
            shutil.copy(pki.path(f"{name}.{ext}"), gw.dir / f"{name}.{ext}")
    gateways.started.append(gw)
    return gw.start()


def curl(gw: TlsGateway, pki: Pki, host: str, path: str = "/", *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["curl", "-sS", "--max-time", "10", "--cacert", pki.path("ca.pem"),
         "--resolve", f"{host}:{gw.tls_port}:127.0.0.1", "--resolve", f"{host}:{gw.redirect_port}:127.0.0.1",
         *args, gw.https(host, path)],
        capture_output=True, text=True, timeout=20)


def peer_certificate(port: int, context: ssl.SSLContext, server_name: str | None) -> dict:
    """The certificate the gateway serves to a client sending ``server_name`` in SNI (None: no SNI)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with context.wrap_socket(raw, server_hostname=server_name) as tls:
            return tls.getpeercert()


def dns_names(cert: dict) -> list[str]:
    return [value for kind, value in cert.get("subjectAltName", ()) if kind == "DNS"]


def wait_counts(gw, family: str, label: str, expected: dict[str, float]) -> dict:
    """/metrics once the "secure" listener's ``family`` series reach ``expected`` ({label value: at least})."""
    def reached() -> dict | None:
        found = settled(gw)
        if all(value(found, family, listener="secure", **{label: key}) >= n for key, n in expected.items()):
            return found
        return None
    return wait_until(reached, f"{family} reaches {expected}")


def echo_config(upstream: Upstream, **upstream_fields) -> dict:
    return {"upstreams": [upstream.config(**upstream_fields)],
            "routes": [{"name": "echo", "path_prefix": "/", "upstream": "up"}]}


# -- listeners ------------------------------------------------------------------

def test_sni_chooses_the_certificate_for_curl_and_httpx(gateways, pki, upstream):
    gw = start_tls_gateway(gateways, pki, echo_config(upstream))

    for host in ("site.test", "api.wild.test"):  # curl verifies that the certificate carries the name
        result = curl(gw, pki, host, "/curl?x=1", "-v")
        assert result.returncode == 0, result.stderr
        echo = json.loads(result.stdout)
        assert echo["target"] == "/curl?x=1"
        headers = {k.lower(): v for k, v in echo["headers"]}
        assert headers["x-forwarded-proto"] == "https"
        assert "ALPN: server accepted h2" in result.stderr  # HTTP/2 is offered by default

    with httpx.Client(verify=pki.client_context(), timeout=10) as client:
        for host in ("site.test", "b.wild.test"):
            response = client.get(f"https://127.0.0.1:{gw.tls_port}/httpx", headers={"Host": host},
                                  extensions={"sni_hostname": host})
            assert response.status_code == 200
            assert response.json()["target"] == "/httpx"
    received = upstream.wait_request("/httpx")
    assert received.header("X-Forwarded-Proto") == "https"
    # the plain listener still says http
    plain = httpx.get(gw.url("/plain"), timeout=10)
    assert plain.status_code == 200 and upstream.wait_request("/plain").header("X-Forwarded-Proto") == "http"


def test_unknown_or_no_server_name_gets_the_first_certificate(gateways, pki):
    gw = start_tls_gateway(gateways, pki)
    lenient = pki.client_context(check_hostname=False)
    assert dns_names(peer_certificate(gw.tls_port, lenient, "unknown.example")) == ["site.test"]
    assert dns_names(peer_certificate(gw.tls_port, lenient, None)) == ["site.test"]
    assert dns_names(peer_certificate(gw.tls_port, lenient, "deep.api.wild.test")) == ["site.test"]
    assert dns_names(peer_certificate(gw.tls_port, pki.client_context(), "x.wild.test")) == ["*.wild.test"]
    # ALPN offers h2 and http/1.1 by default: a client asking for h2 first gets it, one asking only for
    # http/1.1 gets that (a listener with http2 = false offers http/1.1 only: test_http2.py)
    for offered, chosen in ((["h2", "http/1.1"], "h2"), (["http/1.1"], "http/1.1")):
        context = pki.client_context()
        context.set_alpn_protocols(offered)
        with socket.create_connection(("127.0.0.1", gw.tls_port), timeout=10) as raw:
            with context.wrap_socket(raw, server_hostname="site.test") as tls:
                assert tls.selected_alpn_protocol() == chosen


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1:DeprecationWarning")
def test_handshake_failures_are_refused_counted_by_reason_and_not_logged(gateways, pki):
    gw = start_tls_gateway(gateways, pki, tls={
        "certificates": [{"cert": "site.pem", "key": "site.key"}], "handshake_timeout": "1s"})

    old = pki.client_context(minimum_version=ssl.TLSVersion.TLSv1, maximum_version=ssl.TLSVersion.TLSv1_1)
    old.set_ciphers("DEFAULT@SECLEVEL=0")
    with pytest.raises(ssl.SSLError):
        peer_certificate(gw.tls_port, old, "site.test")
    s_client = subprocess.run(
        ["openssl", "s_client", "-connect", f"127.0.0.1:{gw.tls_port}", "-servername", "site.test", "-tls1_1",
         "-cipher", "DEFAULT@SECLEVEL=0"], input="", capture_output=True, text=True, timeout=20)
    assert s_client.returncode != 0 and "Cipher is (NONE)" in s_client.stdout
    no_cipher = subprocess.run(
        ["openssl", "s_client", "-connect", f"127.0.0.1:{gw.tls_port}", "-tls1_2", "-cipher", "NULL-SHA256@SECLEVEL=0"],
        input="", capture_output=True, text=True, timeout=20)
    assert no_cipher.returncode != 0
    untrusting = subprocess.run(  # curl without our CA: it refuses the certificate with an alert
        ["curl", "-sS", "--max-time", "10", "--resolve", f"site.test:{gw.tls_port}:127.0.0.1",
         gw.https("site.test")], capture_output=True, text=True, timeout=20)
    assert untrusting.returncode == 60
    with socket.create_connection(("127.0.0.1", gw.tls_port), timeout=10) as raw:  # plain HTTP to the TLS port
        raw.sendall(b"GET / HTTP/1.1\r\nHost: site.test\r\n\r\n")
        assert raw.recv(100) == b""
    with socket.create_connection(("127.0.0.1", gw.tls_port), timeout=10) as raw:  # silent past handshake_timeout
        raw.settimeout(10)
        started = time.monotonic()
        assert raw.recv(100) == b""
        assert 0.9 < time.monotonic() - started < 5

    failures = "fastgate_tls_handshake_failures_total"
    expected = {"protocol_version": 2, "no_shared_cipher": 1, "unknown_ca": 1, "http_request": 1, "timeout": 1}
    found = wait_counts(gw, failures, "reason", expected)
    assert {r: value(found, failures, listener="secure", reason=r) for r in expected} == expected
    assert value(found, failures, listener="secure", reason="other") == 0
    log = gw.log_text().lower()
    assert "ssl" not in log and "handshake" not in log, "a client's failed handshake costs no log line"

    good = curl(gw, pki, "site.test", READY)
    assert good.returncode == 0 and good.stdout == "ready"


def test_min_version_1_3_refuses_a_tls_1_2_client(gateways, pki):
    gw = start_tls_gateway(gateways, pki, tls={
        "certificates": [{"cert": "site.pem", "key": "site.key"}], "min_version": "1.3"})
    with pytest.raises(ssl.SSLError):
        peer_certificate(gw.tls_port, pki.client_context(maximum_version=ssl.TLSVersion.TLSv1_2), "site.test")
    assert curl(gw, pki, "site.test", READY, "--tls-max", "1.3").stdout == "ready"
    refused = curl(gw, pki, "site.test", READY, "--tls-max", "1.2")
    assert refused.returncode != 0
    found = wait_counts(gw, "fastgate_tls_handshake_failures_total", "reason", {"protocol_version": 2})
    assert value(found, "fastgate_tls_handshakes_total", listener="secure", version="TLSv1.3") >= 1
    assert value(found, "fastgate_tls_handshakes_total", listener="secure", version="TLSv1.2") == 0


def test_plain_listener_redirects_to_https(gateways, pki, upstream):
    gw = start_tls_gateway(gateways, pki, echo_config(upstream), redirect=True)
    base = f"http://127.0.0.1:{gw.redirect_port}"
    response = httpx.get(f"{base}/a/b?c=1&d=%20", headers={"Host": "site.test:8080"}, timeout=10)
    assert response.status_code == 308
    assert response.headers["location"] == f"https://site.test:{gw.tls_port}/a/b?c=1&d=%20"
    assert response.content == b"" and response.headers["content-length"] == "0"
    posted = httpx.post(f"{base}/form", headers={"Host": "site.test"}, content=b"x=1", timeout=10)
    assert posted.status_code == 308 and posted.headers["location"] == f"https://site.test:{gw.tls_port}/form"
    assert upstream.requests_with("/a/b") == [] and upstream.requests_with("/form") == []
    # curl follows it to the TLS listener, keeping the POST and its body
    followed = subprocess.run(
        ["curl", "-sS", "-L", "--max-time", "10", "--cacert", pki.path("ca.pem"), "--data-binary", "x=1",
         "--resolve", f"site.test:{gw.redirect_port}:127.0.0.1", "--resolve", f"site.test:{gw.tls_port}:127.0.0.1",
         f"http://site.test:{gw.redirect_port}/followed?q=2"], capture_output=True, text=True, timeout=20)
    assert followed.returncode == 0, followed.stderr
    echo = json.loads(followed.stdout)
    assert (echo["method"], echo["target"], echo["body_len"]) == ("POST", "/followed?q=2", 3)
    found = settled(gw)
    assert value(found, "fastgate_requests_total", route="(https redirect)", method="GET", status="3xx") == 1
    assert value(found, "fastgate_requests_total", route="(https redirect)", method="POST", status="3xx") == 2


def test_reload_reads_a_changed_certificate(gateways, pki):
    gw = start_tls_gateway(gateways, pki, workers=2)
    old_workers = wait_until(lambda: pids if len(pids := gw.worker_pids()) == 2 else None, "2 workers run")
    context = pki.client_context()
    before = int(peer_certificate(gw.tls_port, context, "site.test")["serialNumber"], 16)

    pki.write_pair("renewed", pki.ca.issue_cert("site.test"))
    for ext in ("pem", "key"):
        shutil.copy(pki.path(f"renewed.{ext}"), gw.dir / f"site.{ext}.new")
        (gw.dir / f"site.{ext}.new").replace(gw.dir / f"site.{ext}")
    result = gw.cli("-s", "reload")
    assert result.returncode == 0, result.stderr
    wait_until(lambda: "reloaded: generation 2" in gw.log_text(), "the new generation serves")
    wait_until(lambda: len(pids := gw.worker_pids()) == 2 and not pids & old_workers, "the old workers are gone")
    after = {int(peer_certificate(gw.tls_port, context, "site.test")["serialNumber"], 16) for _ in range(8)}
    assert after == {x509.load_pem_x509_certificate((gw.dir / "site.pem").read_bytes()).serial_number}
    assert before not in after


def _expiry_gauges(gw) -> dict[tuple[str, str], float]:
    """(certificate file name, DNS name) -> the expiry gauge of the TLS listener "secure"."""
    found = {}
    for (name, labels), number in settled(gw).items():
        if name == "fastgate_tls_certificate_expiry_timestamp_seconds":
            labels = dict(labels)
            assert labels["listener"] == "secure"
            found[(Path(labels["certificate"]).name, labels["name"])] = number
    return found


def test_certificate_expiry_is_exported_and_follows_a_reload(gateways, pki):
    soon = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0) + datetime.timedelta(days=5)
    pki.write_pair("short", pki.ca.issue_cert("short.test", not_after=soon))
    gw = start_tls_gateway(gateways, pki, workers=2, files=("site", "short"), tls={"certificates": [
        {"cert": "site.pem", "key": "site.key"}, {"cert": "short.pem", "key": "short.key"}]})
    wait_until(lambda: len(gw.worker_pids()) == 2, "2 workers run")
    site_expiry = x509.load_pem_x509_certificate((gw.dir / "site.pem").read_bytes()).not_valid_after_utc
    # one series per certificate, not one per worker added up
    assert _expiry_gauges(gw) == {("site.pem", "site.test"): site_expiry.timestamp(),
                                  ("short.pem", "short.test"): soon.timestamp()}

    later = soon + datetime.timedelta(days=60)
    pki.write_pair("renewed-short", pki.ca.issue_cert("short.test", not_after=later))
    for ext in ("pem", "key"):
        shutil.copy(pki.path(f"renewed-short.{ext}"), gw.dir / f"short.{ext}.new")
        (gw.dir / f"short.{ext}.new").replace(gw.dir / f"short.{ext}")
    assert gw.cli("-s", "reload").returncode == 0
    wait_until(lambda: "reloaded: generation 2" in gw.log_text(), "the new generation serves")
    wait_until(lambda: _expiry_gauges(gw).get(("short.pem", "short.test")) == later.timestamp(),
               "the renewed certificate's expiry is exported")


def test_reload_with_a_missing_certificate_is_refused(gateways, pki):
    gw = start_tls_gateway(gateways, pki, workers=2)
    workers = wait_until(lambda: pids if len(pids := gw.worker_pids()) == 2 else None, "2 workers run")
    served = peer_certificate(gw.tls_port, pki.client_context(), "x.wild.test")["serialNumber"]

    gw.tls = {"certificates": [{"cert": "site.pem", "key": "site.key"}, {"cert": "gone.pem", "key": "wild.key"}]}
    gw.write_config()
    check = gw.cli("-t")
    assert check.returncode == 1
    where = f"listeners[1].tls.certificates[1].cert: cannot read {gw.dir}/gone.pem: No such file or directory"
    assert f"{gw.config_path}: {where}" in check.stderr
    gw.signal(signal.SIGHUP)  # (`fastgate -s reload` checks the config first, and would not send it)
    wait_until(lambda: "reload refused" in gw.log_text(), "the master refuses the reload")
    assert where in gw.log_text()
    assert gw.worker_pids() == workers, "the old workers go on"
    assert peer_certificate(gw.tls_port, pki.client_context(), "x.wild.test")["serialNumber"] == served
    assert curl(gw, pki, "a.wild.test", READY).stdout == "ready"


@pytest.mark.parametrize("server_name,version", [
    ("site.test", "-tls1_3"),
    ("a.wild.test", "-tls1_3"),  # a certificate SNI switched to: tickets are still sealed with the listener's keys
    ("site.test", "-tls1_2"),
])
def test_sessions_resume_on_any_worker(gateways, pki, server_name, version):
    gw = start_tls_gateway(gateways, pki, workers=2)
    wait_until(lambda: len(gw.worker_pids()) == 2, "2 workers run")
    session = gw.dir / "session.pem"
    request = f"GET {READY} HTTP/1.1\r\nHost: {server_name}\r\nConnection: close\r\n\r\n"

    def s_client(*args: str) -> str:
        """One connection carrying one request (so that TLS 1.3 tickets are read): its "New"/"Reused" line."""
        result = subprocess.run(
            ["openssl", "s_client", "-connect", f"127.0.0.1:{gw.tls_port}", "-servername", server_name, version,
             "-CAfile", pki.path("ca.pem"), "-verify_return_error", "-ign_eof", *args],
            input=request, capture_output=True, text=True, timeout=20)
        assert "HTTP/1.1 200 OK" in result.stdout, result.stdout + result.stderr
        return next(line for line in result.stdout.splitlines() if line.startswith(("New,", "Reused,")))

    def served_by_worker() -> dict[int, float]:
        return {w["pid"]: w["requests"] for w in admin_get(gw, "/status").json()["workers"]}

    assert s_client("-sess_out", str(session)).startswith("New,")
    time.sleep(0.6)  # the workers publish their counts on the clock tick
    start = served_by_worker()
    resumed = 0
    for _ in range(40):  # SO_REUSEPORT spreads the connections: both workers soon serve resumed ones
        assert s_client("-sess_in", str(session)).startswith("Reused,")
        resumed += 1
        if resumed >= 4:
            time.sleep(0.6)
            now = served_by_worker()
            if len(now) == 2 and all(now[pid] > start.get(pid, 0) for pid in now):
                break
    else:
        raise AssertionError(f"resumed connections never reached both workers: {start} -> {served_by_worker()}")
    found = settled(gw)
    assert value(found, "fastgate_tls_sessions_resumed_total", listener="secure") == resumed
    assert value(found, "fastgate_tls_handshakes_total", listener="secure",
                 version="TLSv1.3" if version == "-tls1_3" else "TLSv1.2") == resumed + 1


# -- upstreams ------------------------------------------------------------------

@pytest.fixture
def tls_origin(pki):
    """An HTTPS origin whose certificate (from the origin CA) is for 127.0.0.1."""
    with Upstream(pki.origin_context("origin-ip")) as server:
        yield server


def test_https_upstream_is_verified_against_its_ca(gateways, pki, tls_origin):
    trusted = tls_origin.config("trusted", tls=True, tls_ca_file=pki.path("origin-ca.pem"),
                                health={"path": "/healthz", "interval": "1s", "timeout": "900ms"})
    untrusted = tls_origin.config("untrusted", tls=True, tls_ca_file=pki.path("ca.pem"))
    unchecked = tls_origin.config("unchecked", tls=True, tls_verify=False)
    gw = start_tls_gateway(gateways, pki, {
        "upstreams": [trusted, untrusted, unchecked],
        "routes": [{"path_prefix": f"/{name}/", "upstream": name} for name in ("trusted", "untrusted", "unchecked")],
    })
    response = httpx.get(gw.url("/trusted/x?y=1"), timeout=10)
    assert response.status_code == 200 and response.json()["target"] == "/trusted/x?y=1"
    assert tls_origin.wait_request("/trusted/x").header("X-Forwarded-Proto") == "http"
    refused = httpx.get(gw.url("/untrusted/x"), timeout=10)
    assert refused.status_code == 502
    body = refused.json()
    assert body["status"] == 502 and body["error"] and body["request_id"]
    assert tls_origin.requests_with("/untrusted/") == []
    assert httpx.get(gw.url("/unchecked/x"), timeout=10).status_code == 200
    # the health checker speaks TLS too: its probes reach the origin as requests
    tls_origin.wait_request("/healthz")
    assert tls_origin.stats.protocol_errors == []


def test_tls_server_name_is_sent_and_verified(gateways, pki):
    seen: list[str | None] = []
    context = pki.origin_context("origin-name")
    context.sni_callback = lambda ssl_object, name, ctx: seen.append(name)
    with Upstream(context) as origin:
        ca = pki.path("origin-ca.pem")
        gw = start_tls_gateway(gateways, pki, {
            "upstreams": [origin.config("by-ip", tls=True, tls_ca_file=ca),
                          origin.config("by-name", tls=True, tls_ca_file=ca, tls_server_name="origin.test")],
            "routes": [{"path_prefix": "/ip/", "upstream": "by-ip"}, {"path_prefix": "/name/", "upstream": "by-name"}],
        })
        assert httpx.get(gw.url("/ip/x"), timeout=10).status_code == 502  # the certificate is not for 127.0.0.1
        assert seen == [None] * len(seen) and seen  # an IP address is sent no SNI
        seen.clear()
        response = httpx.get(gw.url("/name/x"), timeout=10)
        assert response.status_code == 200 and response.json()["target"] == "/name/x"
        assert seen == ["origin.test"]


def test_client_certificate_to_an_upstream_that_requires_one(gateways, pki):
    with Upstream(pki.origin_context("origin-ip", client_ca=True)) as origin:
        ca = pki.path("origin-ca.pem")
        gw = start_tls_gateway(gateways, pki, {
            "upstreams": [origin.config("anonymous", tls=True, tls_ca_file=ca),
                          origin.config("mtls", tls=True, tls_ca_file=ca, tls_client_cert=pki.path("client.pem"),
                                        tls_client_key=pki.path("client.key"))],
            "routes": [{"path_prefix": "/anonymous/", "upstream": "anonymous"},
                       {"path_prefix": "/mtls/", "upstream": "mtls"}],
        })
        assert httpx.get(gw.url("/anonymous/x"), timeout=10).status_code == 502
        response = httpx.get(gw.url("/mtls/x"), timeout=10)
        assert response.status_code == 200 and response.json()["target"] == "/mtls/x"
        assert origin.requests_with("/anonymous/") == []
        # the connection is kept alive: a second request reuses it
        assert httpx.get(gw.url("/mtls/y"), timeout=10).status_code == 200
        assert origin.wait_request("/mtls/y").conn_id == origin.wait_request("/mtls/x").conn_id


def test_check_names_the_file_and_field_of_a_bad_certificate(tmp_path, pki):
    config = tmp_path / "gate.conf"
    shutil.copy(pki.path("site.pem"), tmp_path / "site.pem")
    config.write_text('[[listeners]]\naddress = "127.0.0.1:8443"\n'
                      '[listeners.tls]\ncertificates = [{ cert = "site.pem", key = "site.key" }]\n')
    result = run_cli("-t", "-c", str(config))
    assert result.returncode == 1
    assert (f"{config}: listeners[0].tls.certificates[0].key: cannot read {tmp_path}/site.key: "
            "No such file or directory") in result.stderr
    shutil.copy(pki.path("wild.key"), tmp_path / "site.key")
    result = run_cli("-t", "-c", str(config))
    assert result.returncode == 1
    assert "listeners[0].tls.certificates[0].key" in result.stderr and "is not the key of the certificate" in result.stderr
    shutil.copy(pki.path("site.key"), tmp_path / "site.key")
    assert run_cli("-t", "-c", str(config)).returncode == 0
