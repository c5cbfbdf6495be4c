"""TLS-ALPN-01 (RFC 8737) for the manager: the challenge type, and the certificate that answers it.

The CA validates a name by a TLS handshake to port 443 of that name with SNI
the name and ALPN offering only ``acme-tls/1``; the server must answer with
ALPN ``acme-tls/1`` and a self-signed certificate for the name alone that
carries the critical id-pe-acmeIdentifier extension: the SHA-256 of the
challenge's key authorization.

certbot's ``acme`` package dropped its TLS-ALPN-01 classes (5.x has none),
so the two classes it needs to read the CA's challenge and post the answer
are registered here, the way the package registers its own
(``Challenge.register``); the certificate is made with ``cryptography`` (the
package's ``make_self_signed_cert`` is deprecated). The manager writes key and certificate in one PEM
file to the storage (storage.put_tls_alpn_challenge); the workers
(acme/tls_alpn_answers.py) serve it.
"""

import datetime
import hashlib
from typing import Any

import josepy
from acme import challenges
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

ACME_IDENTIFIER = x509.ObjectIdentifier("1.3.6.1.5.5.7.1.31")
"""id-pe-acmeIdentifier (RFC 8737 6.1)."""
_CERTIFICATE_VALIDITY = datetime.timedelta(days=7)
"""The challenge certificate's life: longer than any validation, which the CA makes within minutes."""
_CLOCK_SKEW = datetime.timedelta(hours=1)
"""How far back the certificate is valid from, for a CA whose clock is behind ours."""


@challenges.ChallengeResponse.register
class TlsAlpn01Response(challenges.KeyAuthorizationChallengeResponse):
    """The answer posted to the CA: an empty object, the handshake proves the rest."""

    typ = "tls-alpn-01"


@challenges.Challenge.register
class TlsAlpn01(challenges.KeyAuthorizationChallenge):
    """The CA's tls-alpn-01 challenge (a token, like http-01's)."""

    response_cls = TlsAlpn01Response
    typ = response_cls.typ

    def validation(self, account_key: josepy.JWK, **unused: Any) -> str:
        """The key authorization, which the challenge certificate carries hashed."""
        return self.key_authorization(account_key)


def challenge_certificate(name: str, key_authorization: str) -> bytes:
    """The PEM private key and self-signed certificate that answer the challenge for ``name``."""
    key = ec.generate_private_key(ec.SECP256R1())
    digest = hashlib.sha256(key_authorization.encode()).digest()
    identifier = x509.UnrecognizedExtension(ACME_IDENTIFIER, b"\x04\x20" + digest)  # DER OCTET STRING
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - _CLOCK_SKEW)
            .not_valid_after(now + _CERTIFICATE_VALIDITY)
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
            .add_extension(identifier, critical=True)
            .sign(key, hashes.SHA256()))
    return (key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption())
            + cert.public_bytes(serialization.Encoding.PEM))
