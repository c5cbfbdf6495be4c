"""ACME config: what a listener's tls.acme may say (refused with file, field and reason), what the
loader compiles from it (the placeholder, the stored certificate first, the challenge route), and
when the manager orders (due_at)."""

import datetime
import os
from pathlib import Path

import pytest
import trustme
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from fastgate.acme.manager import due_at
from fastgate.acme.storage import CertificateStore, Status
from fastgate.config.errors import ConfigError
from fastgate.config.load import load_config
from fastgate.config.units import parse_duration

PLAIN = '[[listeners]]\naddress = "127.0.0.1:8080"\n'
ROUTE = '[[routes]]\nrespond = { body = "hi" }\n'


def write(tmp_path: Path, acme: str, plain: bool = True, extra: str = "") -> str:
    text = (PLAIN if plain else "") + (
        f'[[listeners]]\naddress = "127.0.0.1:8443"\n{extra}[listeners.tls.acme]\n{acme}\n') + ROUTE
    path = tmp_path / "gate.conf"
    path.write_text(text)
    return str(path)


@pytest.mark.parametrize("acme, plain, field, reason", [
    ('names = []', True, "listeners[1].tls.acme.names", "at least one DNS name"),
    ('names = ["*.shop.test"]', True, "listeners[1].tls.acme.names[0]", "needs a DNS-01"),
    ('names = ["shop..test"]', True, "listeners[1].tls.acme.names[0]", "is not a DNS name"),
    ('names = ["10.0.0.1"]', True, "listeners[1].tls.acme.names[0]", "is not a DNS name"),
    ('names = ["shop.test"]\ndirectory = "http://ca.test/dir"', True, "listeners[1].tls.acme.directory", "https://"),
    ('names = ["shop.test"]\nemail = "ops"', True, "listeners[1].tls.acme.email", "not an email address"),
    ('names = ["shop.test"]\nrenew_before = "0s"', True, "listeners[1].tls.acme.renew_before", "greater than zero"),
    ('names = ["shop.test"]\nrenew_before = "30x"', True, "listeners[1].tls.acme.renew_before", "expected a duration"),
    ('names = ["shop.test"]', False, "listeners[0].tls.acme", "plain listener"),
    ('names = ["shop.test"]\nchallenge = "http-01"', False, "listeners[0].tls.acme", "tls-alpn-01"),
    ('names = ["shop.test"]\nchallenge = "dns-01"', True, "listeners[1].tls.acme.challenge", "Invalid enum value 'dns-01'"),
])
def test_bad_acme_tables_are_refused_with_field_and_reason(tmp_path, acme, plain, field, reason):
    path = write(tmp_path, acme, plain)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert caught.value.field == field and reason in caught.value.reason
    assert str(caught.value).startswith(f"{path}: {field}: ")


def test_tls_alpn_01_needs_no_plain_listener_and_is_answered_on_its_own_listener(tmp_path):
    loaded = load_config(write(tmp_path, 'names = ["Shop.test"]\nchallenge = "tls-alpn-01"', plain=False))
    (managed,) = loaded.acme
    assert managed.challenge == "tls-alpn-01"
    (listener,) = loaded.listeners
    assert listener.tls_alpn_answers.paths == {"shop.test": str(tmp_path / "acme" / "challenges" /
                                                              "tls-alpn-01.shop.test.pem")}
    # no HTTP-01 route: the request goes to the config's route
    assert loaded.router.match(b"shop.test", b"/.well-known/acme-challenge/abc", b"GET").name == "routes[0]"


def test_http_01_listeners_look_at_no_hello(tmp_path):
    loaded = load_config(write(tmp_path, 'names = ["shop.test"]'))
    assert [spec.tls_alpn_answers for spec in loaded.listeners] == [None, None]


def test_a_tls_listener_needs_certificates_or_acme(tmp_path):
    path = tmp_path / "gate.conf"
    path.write_text(PLAIN + '[[listeners]]\naddress = "127.0.0.1:8443"\ntls = { certificates = [] }\n' + ROUTE)
    with pytest.raises(ConfigError, match=r"listeners\[1\].tls.certificates: at least one certificate is needed"):
        load_config(str(path))


def test_two_listeners_cannot_manage_one_name_differently(tmp_path):
    path = tmp_path / "gate.conf"
    path.write_text(PLAIN + "".join(
        f'[[listeners]]\naddress = "127.0.0.1:{port}"\n[listeners.tls.acme]\nnames = ["shop.test"]\n'
        f'renew_before = "{days}d"\n' for port, days in ((8443, 30), (8444, 20))) + ROUTE)
    with pytest.raises(ConfigError, match=r"listeners\[2\].tls.acme: another listener's acme table is for 'shop.test'"):
        load_config(str(path))


def test_days_are_a_duration():
    assert parse_duration("30d") == 30 * 86400.0


def test_without_a_stored_certificate_a_placeholder_serves_and_nothing_is_written(tmp_path):
    loaded = load_config(write(tmp_path, 'names = ["Shop.test", "www.shop.test"]'))
    (managed,) = loaded.acme
    assert managed.names == ("shop.test", "www.shop.test") and managed.storage == str(tmp_path / "acme")
    (info,) = loaded.listeners[1].tls.certificates
    assert info.names == ("shop.test", "www.shop.test")
    assert not os.path.exists(info.cert_path) and not (tmp_path / "acme").exists()  # -t writes nothing
    # the CA's requests reach the challenge route for the managed names only
    assert loaded.router.match(b"shop.test", b"/.well-known/acme-challenge/abc", b"GET").name == "(acme challenge)"
    assert loaded.router.match(b"other.test", b"/.well-known/acme-challenge/abc", b"GET").name == "routes[0]"


def issue(storage: Path, names: list[str], lifetime: datetime.timedelta) -> x509.Certificate:
    """Store a certificate for ``names`` as the manager would, signed by a test CA."""
    ca = trustme.CA()
    issuer_key = serialization.load_pem_private_key(ca.private_key_pem.bytes(), None)
    issuer = x509.load_pem_x509_certificate(ca.cert_pem.bytes())
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
            .issuer_name(issuer.subject).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now).not_valid_after(now + lifetime)
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=False)
            .sign(issuer_key, hashes.SHA256()))
    folder = storage / "certificates" / names[0]
    folder.mkdir(parents=True)
    (folder / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (folder / "key.pem").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                       serialization.NoEncryption()))
    return cert


def test_a_stored_certificate_serves_first_and_its_renewal_is_due_before_expiry(tmp_path):
    cert = issue(tmp_path / "acme", ["shop.test"], datetime.timedelta(days=90))
    loaded = load_config(write(tmp_path, 'names = ["shop.test"]\nrenew_before = "30d"'))
    (info,) = loaded.listeners[1].tls.certificates
    assert info.cert_path == str(tmp_path / "acme" / "certificates" / "shop.test" / "cert.pem")
    store = CertificateStore(loaded.acme[0])
    expiry = cert.not_valid_after_utc.timestamp()
    assert due_at(store) == pytest.approx(expiry - 30 * 86400)
    # a failed order puts the next one off
    store.write_status(Status(failures=1, failed_in_a_row=1, retry_at=expiry))
    assert due_at(store) == expiry


def test_renewal_waits_a_third_of_the_lifetime_whatever_renew_before_says(tmp_path):
    cert = issue(tmp_path / "acme", ["shop.test"], datetime.timedelta(days=90))
    loaded = load_config(write(tmp_path, 'names = ["shop.test"]\nrenew_before = "365d"'))
    assert due_at(CertificateStore(loaded.acme[0])) == pytest.approx(cert.not_valid_before_utc.timestamp()
                                                                     + 30 * 86400)


def test_a_name_added_to_the_config_orders_at_once(tmp_path):
    issue(tmp_path / "acme", ["shop.test"], datetime.timedelta(days=90))
    loaded = load_config(write(tmp_path, 'names = ["shop.test", "new.shop.test"]'))
    assert due_at(CertificateStore(loaded.acme[0])) == 0.0
