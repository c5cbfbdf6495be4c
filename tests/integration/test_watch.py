"""``[server] watch = true``: an edited config file, or a certificate it names, is served without a
signal; a bad edit is refused and logged, and the running config goes on serving."""

import shutil
import socket
import ssl

import httpx
import trustme
from cryptography import x509

from tests.support.ports import free_port
from tests.support.wait import wait_until


def _config(body: str, **server) -> dict:
    return {"server": {"watch": True, **server}, "routes": [{"name": "gen", "path": "/gen", "respond": {"body": body}}]}


def _generation(gw) -> str:
    return httpx.get(gw.url("/gen"), timeout=10).text


def test_an_edited_config_is_served_without_a_signal(gateways):
    gw = gateways.start(_config("one"), workers=2)
    wait_until(lambda: "watching 1 files for changes" in gw.log_text(), "the master watches the config file")
    gw.write_config(_config("two"))
    wait_until(lambda: _generation(gw) == "two", "the edited config is served")
    assert f"changed: {gw.config_path}; reloading" in gw.log_text()


def test_a_bad_edit_is_refused_and_the_old_config_serves(gateways):
    gw = gateways.start(_config("one"), workers=2)
    wait_until(lambda: "watching 1 files" in gw.log_text(), "the master watches the config file")
    workers = gw.worker_pids()
    gw.write_config(raw='[server]\nwatch = true\n[[routes]\npath = "/gen"\n')
    wait_until(lambda: "reload refused" in gw.log_text(), "the bad file is refused")
    assert f"{gw.config_path}: not valid TOML" in gw.log_text()
    assert [_generation(gw) for _ in range(3)] == ["one"] * 3
    assert gw.alive() and gw.worker_pids() == workers
    gw.write_config(_config("three"))
    wait_until(lambda: _generation(gw) == "three", "the fixed config is served")


def _served_names(port: int, ca: trustme.CA) -> list[str]:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    context.check_hostname = False
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with context.wrap_socket(raw, server_hostname="site.test") as tls:
            cert = x509.load_der_x509_certificate(tls.getpeercert(binary_form=True))
    return cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName)


def test_a_replaced_certificate_file_is_served(gateways, tmp_path):
    ca = trustme.CA()
    for name, host in (("old", "old.site.test"), ("new", "new.site.test")):
        leaf = ca.issue_cert("site.test", host)
        leaf.cert_chain_pems[0].write_to_path(str(tmp_path / f"{name}.pem"))
        leaf.private_key_pem.write_to_path(str(tmp_path / f"{name}.key"))
    tls_port = free_port()
    gw = gateways.start(_config("one"), workers=1)
    # a TLS listener is added once the gateway knows its plain port (the first edit, itself watched)
    gw.dir.joinpath("site.pem").write_bytes((tmp_path / "old.pem").read_bytes())
    gw.dir.joinpath("site.key").write_bytes((tmp_path / "old.key").read_bytes())
    gw.write_config({**_config("one"), "listeners": [
        {"address": f"127.0.0.1:{gw.port}"},
        {"address": f"127.0.0.1:{tls_port}", "tls": {"certificates": [{"cert": "site.pem", "key": "site.key"}]}}]})
    wait_until(lambda: "watching 3 files" in gw.log_text(), "the master watches the certificate files too")
    assert "old.site.test" in _served_names(tls_port, ca)
    # the key first, then the certificate: in between the pair does not match and that reload is refused
    shutil.copy(tmp_path / "new.key", gw.dir / "site.key")
    shutil.copy(tmp_path / "new.pem", gw.dir / "site.pem")
    wait_until(lambda: "new.site.test" in _served_names(tls_port, ca), "the new certificate is served")
