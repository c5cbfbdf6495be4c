"""HTTP-01 answers: the workers serve ``/.well-known/acme-challenge/<token>`` from the storage.

The manager process writes each pending challenge's key authorization to
``<storage>/challenges/<token>`` before it tells the CA to validate, and
removes it after. A built-in route (config/listeners.py: hosts = every
managed name, path prefix ``/.well-known/acme-challenge/``) is answered by
``ChallengeAnswers`` through the hook a route has for answers the gateway
makes itself (routing/redirect.py describes it): the file's bytes with 200,
or 404 when no such challenge is pending. It is on every listener's router,
the redirecting ones' too (a CA asks over plain HTTP, and must get the answer
there, not a redirect to a certificate it has not issued yet). A token that
is not base64url never reaches the file system. Reading a file of ~90 bytes
in the event loop is cheap, and only a CA asks.
"""

import os

import msgspec

from fastgate.acme.storage import TOKEN, challenges_dir

CHALLENGE_ROUTE = "(acme challenge)"
"""The route name (logs, metrics) of the CA's challenge requests."""
CHALLENGE_PREFIX = "/.well-known/acme-challenge/"
_encode = msgspec.json.Encoder().encode


class ChallengeAnswers:
    """Answers the challenge route's requests (a route's ``aggregate`` hook). Immutable after load."""

    __slots__ = ("folders",)

    def __init__(self, storages: list[str]) -> None:
        self.folders = tuple(dict.fromkeys(challenges_dir(s) for s in storages))
        """Where pending challenges are, one folder per storage directory."""

    def start(self, head, request_id: bytes, client_ip: bytes, proto_header: bytes, clock,
              on_done) -> "ChallengeAnswer":
        answer = ChallengeAnswer(self.key_authorization(head.path[len(CHALLENGE_PREFIX):]), request_id)
        clock.loop.call_soon(on_done)
        return answer

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


class ChallengeAnswer:
    __slots__ = ("body", "request_id", "status")

    def __init__(self, body: bytes | None, request_id: bytes) -> None:
        self.body = body
        self.request_id = request_id
        self.status = 200 if body is not None else 404

    def answer(self, extra_headers: bytes) -> tuple[bytes, bytes]:
        """The answer's header fields and body."""
        request_id = b"\r\nX-Request-ID: " + self.request_id if self.request_id else b""
        if self.body is None:
            body = _encode({"error": "no such ACME challenge", "status": 404,
                            "request_id": self.request_id.decode("latin-1")})
            content_type = b"application/json"
        else:
            body, content_type = self.body, b"application/octet-stream"
        return b"".join((b"\r\nContent-Type: ", content_type, b"\r\nContent-Length: %d" % len(body),
                         extra_headers, request_id)), body

    def cancel(self) -> None:
        """The client went away first: nothing to stop."""
