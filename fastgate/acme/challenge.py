"""HTTP-01 answers: the workers serve ``/.well-known/acme-challenge/<token>`` from the storage.

The manager process writes each pending challenge's key authorization to
``<storage>/challenges/<token>`` before it tells the CA to validate, and
removes it after. A built-in route (config/listeners.py: hosts = every
managed name, path prefix ``/.well-known/acme-challenge/``) is answered by
``ChallengeAnswers``, the route's one filter (filters/base.py): the file's
bytes with 200, or 404 (JSON) when no such challenge is pending. It is on every listener's router,
the redirecting ones' too (a CA asks over plain HTTP, and must get the answer
there, not a redirect to a certificate it has not issued yet). A token that
is not base64url never reaches the file system. Reading a file of ~90 bytes
in the event loop is cheap, and only a CA asks.
"""

import os

from fastgate.acme.storage import TOKEN, challenges_dir
from fastgate.filters.base import Answer, Filter

CHALLENGE_ROUTE = "(acme challenge)"
"""The route name (logs, metrics) of the CA's challenge requests."""
CHALLENGE_PREFIX = "/.well-known/acme-challenge/"


class ChallengeAnswers(Filter):
    """The challenge route's one filter: answers each request from the pending challenges.
    Immutable after load."""

    __slots__ = ("folders",)

    def __init__(self, storages: list[str]) -> None:
        self.folders = tuple(dict.fromkeys(challenges_dir(s) for s in storages))
        """Where pending challenges are, one folder per storage directory."""

    def request(self, session) -> Answer:
        body = self.key_authorization(session.path[len(CHALLENGE_PREFIX):])
        if body is None:
            return Answer.failure(404, "no such ACME challenge")
        return Answer.of(200, body, b"application/octet-stream")

    def key_authorization(self, token: bytes) -> bytes | None:
        """The answer to ``token``, or None when no such challenge is pending."""
        text = token.decode("latin-1")
        if not TOKEN.match(text):
            return None
        for folder in self.folders:
            try:
                with open(os.path.join(folder, text), "rb") as f:
                    return f.read()
            except OSError:
                continue
        return None
