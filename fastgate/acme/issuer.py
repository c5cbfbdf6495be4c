"""One ACME order, end to end, with certbot's ``acme`` package: account, order, challenges, certificate.

``obtain`` runs in the manager process and blocks (``acme`` speaks HTTP
through ``requests``): register the account (or find it: a key the CA
knows answers with its account), order the names with a new EC P-256 key's
CSR, publish each pending authorization's answer in the storage for the
workers to serve (HTTP-01: the key authorization; TLS-ALPN-01: the
challenge key and certificate, acme/tls_alpn.py), tell the CA to validate, poll until the order is
valid, download the certificate and its chain. Challenge files are removed
whatever happens. Every failure is raised as ``OrderFailed`` with a one-line
reason (the CA's problem document when it sent one).
"""

import datetime
import os

import josepy
import requests
from acme import challenges, client, crypto_util, errors, messages
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from fastgate.acme.settings import HTTP01, TLS_ALPN01, ManagedCertificate
from fastgate.acme.storage import account_key, put_challenge, put_tls_alpn_challenge
from fastgate.acme.tls_alpn import TlsAlpn01, challenge_certificate

ORDER_DEADLINE_S = 90.0
"""Longest wait for the CA to validate the challenges and issue the certificate."""
_NETWORK_TIMEOUT_S = 15
"""Per HTTP request to the CA."""


class OrderFailed(Exception):
    """An order that did not end with a certificate; ``str()`` says why in one line."""


def obtain(managed: ManagedCertificate, user_agent: str) -> tuple[bytes, bytes]:
    """A new certificate for ``managed.names``: (certificate and chain PEM, private key PEM)."""
    try:
        return _obtain(managed, user_agent)
    except OrderFailed:
        raise
    except errors.ValidationError as exc:
        raise OrderFailed(_validation_reason(exc)) from None
    except messages.Error as exc:
        raise OrderFailed(f"the CA refused: {exc}") from None
    except errors.TimeoutError:
        raise OrderFailed(f"the CA did not issue within {ORDER_DEADLINE_S:.0f}s") from None
    except requests.RequestException as exc:
        raise OrderFailed(f"cannot reach the CA: {exc}") from None
    except (errors.Error, OSError, ValueError) as exc:
        raise OrderFailed(f"{type(exc).__name__}: {exc}") from None


def _obtain(managed: ManagedCertificate, user_agent: str) -> tuple[bytes, bytes]:
    net = client.ClientNetwork(josepy.JWKEC(key=account_key(managed)), alg=josepy.ES256,
                               verify_ssl=managed.directory_ca_file or True, user_agent=user_agent,
                               timeout=_NETWORK_TIMEOUT_S)
    ca = client.ClientV2(client.ClientV2.get_directory(managed.directory, net), net)
    _account(ca, managed)
    key = ec.generate_private_key(ec.SECP256R1())
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    order = ca.new_order(crypto_util.make_csr(key_pem, list(managed.names)))
    published: list[str] = []
    try:
        for authorization in order.authorizations:
            if authorization.body.status == messages.STATUS_VALID:
                continue  # the CA remembers an earlier validation of this name
            challenge = _offered(authorization, managed.challenge)
            response, validation = challenge.response_and_validation(net.key)
            if managed.challenge == HTTP01:
                published.append(put_challenge(managed.storage, challenge.chall.encode("token"), validation))
            else:
                name = authorization.body.identifier.value
                published.append(put_tls_alpn_challenge(managed.storage, name,
                                                        challenge_certificate(name, validation)))
            ca.answer_challenge(challenge, response)
        deadline = datetime.datetime.now() + datetime.timedelta(seconds=ORDER_DEADLINE_S)
        order = ca.poll_and_finalize(order, deadline)
    finally:
        for path in published:
            try:
                os.unlink(path)
            except OSError:
                pass
    return order.fullchain_pem.encode(), key_pem


def _account(ca: client.ClientV2, managed: ManagedCertificate) -> None:
    """Register the account key, or, if the CA knows it already, use that account."""
    contact = (f"mailto:{managed.email}",) if managed.email else ()
    registration = messages.NewRegistration(contact=contact, terms_of_service_agreed=True)
    try:
        ca.new_account(registration)
    except errors.ConflictError as exc:
        ca.net.account = messages.RegistrationResource(uri=exc.location, body=messages.Registration())


_CHALLENGE_CLASSES = {HTTP01: challenges.HTTP01, TLS_ALPN01: TlsAlpn01}


def _offered(authorization: messages.AuthorizationResource, kind: str) -> messages.ChallengeBody:
    """The authorization's challenge of ``kind`` ("http-01", "tls-alpn-01")."""
    for challenge in authorization.body.challenges:
        if isinstance(challenge.chall, _CHALLENGE_CLASSES[kind]):
            return challenge
    raise OrderFailed(f"the CA offers no {kind} challenge for {authorization.body.identifier.value}")


def _validation_reason(exc: errors.ValidationError) -> str:
    reasons = []
    for authorization in exc.failed_authzrs:
        for challenge in authorization.body.challenges:
            if challenge.error is not None:
                problem = challenge.error
                reasons.append(f"{authorization.body.identifier.value}: {challenge.chall.typ} failed: "
                               f"{problem.detail or problem.typ}")
    return "validation failed: " + "; ".join(reasons)
