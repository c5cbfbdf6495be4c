"""TLS config: certificates read and checked with file, field and reason; SNI picks the certificate;
handshake failures get bounded reasons; the https redirect's Location."""

import ssl
from pathlib import Path
from types import SimpleNamespace

import pytest
import trustme
from cryptography.hazmat.primitives import serialization

from fastgate.config.errors import ConfigError
from fastgate.config.load import load_config
from fastgate.filters.https_redirect import HttpsRedirect
from fastgate.tls import failures
from fastgate.tls.failures import failure_reason


@pytest.fixture(scope="module")
def certs(tmp_path_factory) -> Path:
    """site.pem/key (site.test), wild.pem/key (*.wild.test), api.pem/key (api.wild.test), ca.pem,
    other.key (an unrelated key), locked.key (site's key under a passphrase), junk.pem and junk.key."""
    directory = tmp_path_factory.mktemp("certs")
    ca = trustme.CA()
    for name, hosts in (("site", ["site.test"]), ("wild", ["*.wild.test"]), ("api", ["api.wild.test"]),
                        ("other", ["other.test"])):
        cert = ca.issue_cert(*hosts)
        cert.cert_chain_pems[0].write_to_path(str(directory / f"{name}.pem"))
        cert.private_key_pem.write_to_path(str(directory / f"{name}.key"))
    ca.cert_pem.write_to_path(str(directory / "ca.pem"))
    key = serialization.load_pem_private_key((directory / "site.key").read_bytes(), None)
    (directory / "locked.key").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"secret")))
    (directory / "junk.pem").write_text("not a certificate\n")
    (directory / "junk.key").write_text("not a key\n")
    return directory


def write(directory: Path, text: str) -> str:
    path = directory / "gate.conf"
    path.write_text(text)
    return str(path)


def listener(certificates: str, extra: str = "") -> str:
    return f'[[listeners]]\naddress = "127.0.0.1:8443"\n{extra}tls = {{ certificates = [{certificates}] }}\n'


def pair(name: str, key: str | None = None) -> str:
    return f'{{ cert = "{name}.pem", key = "{key or name}.key" }}'


def test_sni_picks_exact_then_wildcard_then_the_first(certs):
    loaded = load_config(write(certs, listener(", ".join((pair("site"), pair("wild"), pair("api"))))))
    tls = loaded.listeners[0].tls
    site, wild, api = tls.certificates
    assert site.names == ("site.test",) and wild.names == ("*.wild.test",)
    by_name = {id(context): info for context, info in zip(tls.contexts, tls.certificates)}

    def served(name: str):
        return by_name[id(tls.context_for(name))]

    assert served("site.test") is site
    assert served("SITE.test.") is site
    assert served("a.wild.test") is wild
    assert served("api.wild.test") is api  # an exact name beats an earlier wildcard
    assert served("b.a.wild.test") is site  # a wildcard covers one label
    assert served("wild.test") is site
    assert served("unknown.example") is site  # no match: the first certificate
    assert tls.context is tls.contexts[0]
    assert loaded.listeners[0].proto_header == b"\r\nX-Forwarded-Proto: https"


def test_paths_are_relative_to_the_config_file(certs, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    conf = tmp_path / "conf"
    conf.mkdir()
    (conf / "certs").symlink_to(certs)
    text = listener('{ cert = "certs/site.pem", key = "certs/site.key" }')
    text += ('[[upstreams]]\nname = "u"\nservers = ["127.0.0.1:9443"]\ntls = true\ntls_ca_file = "certs/ca.pem"\n'
             'tls_client_cert = "certs/other.pem"\ntls_client_key = "certs/other.key"\ntls_server_name = "origin.test"\n')
    loaded = load_config(write(conf, text))
    assert loaded.listeners[0].tls.certificates[0].cert_path == str(conf / "certs/site.pem")
    group = loaded.upstreams["u"]
    assert group.tls.server_hostname("127.0.0.1") == "origin.test"
    assert group.tls.context.verify_mode == ssl.CERT_REQUIRED and group.tls.context.check_hostname


def test_min_version_and_plain_listener(certs):
    text = ('[[listeners]]\naddress = "127.0.0.1:8443"\nname = "public"\n'
            '[listeners.tls]\ncertificates = [{ cert = "site.pem", key = "site.key" }]\nmin_version = "1.3"\n'
            'handshake_timeout = "3s"\n'
            '[[listeners]]\naddress = "127.0.0.1:8080"\n')
    loaded = load_config(write(certs, text))
    secure, plain = loaded.listeners
    assert secure.label == "public" and secure.tls.context.minimum_version == ssl.TLSVersion.TLSv1_3
    assert secure.tls.handshake_timeout_s == 3.0
    assert plain.tls is None and plain.router is None and plain.proto_header == b"\r\nX-Forwarded-Proto: http"


@pytest.mark.parametrize("text,field,reason", [
    (listener(pair("site") + ", " + pair("nope")), "listeners[0].tls.certificates[1].cert",
     "cannot read {dir}/nope.pem: No such file or directory"),
    (listener(pair("site", "nope")), "listeners[0].tls.certificates[0].key",
     "cannot read {dir}/nope.key: No such file or directory"),
    (listener(pair("site", "other")), "listeners[0].tls.certificates[0].key",
     "{dir}/other.key is not the key of the certificate in {dir}/site.pem"),
    (listener(pair("site", "locked")), "listeners[0].tls.certificates[0].key", "is encrypted"),
    (listener(pair("junk", "site")), "listeners[0].tls.certificates[0].cert", "holds no PEM certificate"),
    (listener(pair("site", "junk")), "listeners[0].tls.certificates[0].key", "holds no PEM private key"),
    (listener(""), "listeners[0].tls.certificates", "at least one certificate"),
    ('[[listeners]]\naddress = "127.0.0.1:8443"\n[listeners.tls]\ncertificates = [{ cert = "site.pem", key = "site.key" }]\n'
     'ciphers = "NO-SUCH-CIPHER"\n', "listeners[0].tls.ciphers", "OpenSSL knows no cipher"),
    ('[[listeners]]\naddress = "127.0.0.1:8443"\n[listeners.tls]\ncertificates = [{ cert = "site.pem", key = "site.key" }]\n'
     'ciphers = "ECDHE+AESGCM"\nmin_version = "1.3"\n', "listeners[0].tls.ciphers", "only TLS 1.2 suites"),
    ('[[listeners]]\naddress = "127.0.0.1:8443"\n[listeners.tls]\ncertificates = [{ cert = "site.pem", key = "site.key" }]\n'
     'min_version = "1.1"\n', "listeners[0].tls.min_version", "Invalid enum value '1.1'"),
    ('[[listeners]]\naddress = "127.0.0.1:8443"\n[listeners.tls]\ncertificates = [{ cert = "site.pem", key = "site.key" }]\n'
     'handshake_timeout = "0s"\n', "listeners[0].tls.handshake_timeout", "greater than zero"),
    (listener(pair("site"), "redirect_https = true\n"), "listeners[0].redirect_https", "a TLS listener cannot redirect"),
    ('[[listeners]]\naddress = "127.0.0.1:8080"\nredirect_https = 0\n', "listeners[0].redirect_https", "the https port"),
    ('[[listeners]]\naddress = "127.0.0.1:8080"\nredirect_https = 70000\n', "listeners[0].redirect_https", "the https port"),
    ('[[listeners]]\naddress = "127.0.0.1:8080"\n[[upstreams]]\nname = "u"\nservers = ["127.0.0.1:1"]\ntls_ca_file = "ca.pem"\n',
     "upstreams[0].tls_ca_file", "only used with tls = true"),
    ('[[listeners]]\naddress = "127.0.0.1:8080"\n[[upstreams]]\nname = "u"\nservers = ["127.0.0.1:1"]\ntls_verify = false\n',
     "upstreams[0].tls_verify", "only used with tls = true"),
    ('[[listeners]]\naddress = "127.0.0.1:8080"\n[[upstreams]]\nname = "u"\nservers = ["127.0.0.1:1"]\ntls = true\n'
     'tls_client_cert = "site.pem"\n', "upstreams[0].tls_client_key", "needs both"),
    ('[[listeners]]\naddress = "127.0.0.1:8080"\n[[upstreams]]\nname = "u"\nservers = ["127.0.0.1:1"]\ntls = true\n'
     'tls_ca_file = "nope.pem"\n', "upstreams[0].tls_ca_file", "cannot read {dir}/nope.pem"),
    ('[[listeners]]\naddress = "127.0.0.1:8080"\n[[upstreams]]\nname = "u"\nservers = ["127.0.0.1:1"]\ntls = true\n'
     'tls_ca_file = "junk.pem"\n', "upstreams[0].tls_ca_file", "holds no usable PEM certificate"),
    ('[[listeners]]\naddress = "127.0.0.1:8080"\n[[upstreams]]\nname = "u"\nservers = ["127.0.0.1:1"]\ntls = true\n'
     'tls_client_cert = "site.pem"\ntls_client_key = "other.key"\n', "upstreams[0].tls_client_key", "is not the key"),
    ('[[listeners]]\naddress = "127.0.0.1:8080"\n[[upstreams]]\nname = "u"\nservers = ["127.0.0.1:1"]\ntls = true\n'
     'tls_server_name = "a b"\n', "upstreams[0].tls_server_name", "is not a host name"),
])
def test_bad_tls_config_names_file_field_and_reason(certs, text, field, reason):
    with pytest.raises(ConfigError) as info:
        load_config(write(certs, text))
    error = info.value
    assert error.file.endswith("gate.conf")
    assert (error.field, reason.format(dir=certs) in error.reason) == (field, True), str(error)


def test_redirect_listener_has_its_own_router(certs):
    loaded = load_config(write(certs, '[[listeners]]\naddress = "127.0.0.1:8080"\nredirect_https = 8443\n'
                                      '[[routes]]\npath = "/"\nrespond = { status = 200 }\n'))
    spec = loaded.listeners[0]
    route = spec.router.match(b"a.test", b"/anything", b"POST")
    assert route is not None and route.name == "(https redirect)" and route.index == 1
    assert [type(f) for f in route.filters.request] == [HttpsRedirect]


def head(host: bytes, target: bytes = b"/a/b?c=1"):
    return SimpleNamespace(host=host, target=target)


@pytest.mark.parametrize("port,host,location", [
    (8443, b"example.com:8080", b"https://example.com:8443/a/b?c=1"),
    (443, b"example.com:8080", b"https://example.com/a/b?c=1"),
    (443, b"example.com", b"https://example.com/a/b?c=1"),
    (8443, b"[::1]:8080", b"https://[::1]:8443/a/b?c=1"),
    (8443, b"[::1]", b"https://[::1]:8443/a/b?c=1"),
    (443, b"", None),
])
def test_redirect_location(port, host, location):
    assert HttpsRedirect(port).location(head(host)) == location


def test_redirect_answer_fields():
    answer = HttpsRedirect(8443).request(SimpleNamespace(head=head(b"a.test:80")))
    assert (answer.status, answer.fields, answer.body, answer.error) == (
        308, b"\r\nLocation: https://a.test:8443/a/b?c=1\r\nContent-Length: 0", b"", None)
    no_host = HttpsRedirect(8443).request(SimpleNamespace(head=head(b"")))
    assert (no_host.status, no_host.error) == (400, "a request without Host cannot be redirected to https")


def _ssl_error(reason: str) -> ssl.SSLError:
    error = ssl.SSLError(1, reason)
    error.reason = reason
    return error


@pytest.mark.parametrize("exc,reason", [
    (_ssl_error("UNSUPPORTED_PROTOCOL"), failures.PROTOCOL_VERSION),
    (_ssl_error("NO_SHARED_CIPHER"), failures.NO_SHARED_CIPHER),
    (_ssl_error("TLSV1_ALERT_UNKNOWN_CA"), failures.UNKNOWN_CA),
    (_ssl_error("SSLV3_ALERT_CERTIFICATE_UNKNOWN"), failures.BAD_CERTIFICATE),
    (_ssl_error("HTTP_REQUEST"), failures.HTTP_REQUEST),
    (_ssl_error("WRONG_VERSION_NUMBER_OR_SOMETHING_NEW"), failures.OTHER),
    (ConnectionAbortedError("SSL handshake is taking longer than 10 seconds"), failures.TIMEOUT),
    (ConnectionResetError(), failures.CLOSED),
    (None, failures.CLOSED),
    (RuntimeError("?"), failures.OTHER),
])
def test_failure_reasons_are_bounded(exc, reason):
    assert failure_reason(exc) == reason
    assert reason in failures.REASONS
