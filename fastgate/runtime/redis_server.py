"""Where and how to reach Redis, whichever client goes there (resp.py or redis_client.py).

Its users build one from their own config table (the rate limiter from
``[ratelimit.redis]``, event publishing from ``[events]``), so that this
layer knows no config and both clients read the same description.
"""

import ssl
from collections.abc import Sequence


class RedisServer:
    """One Redis deployment: a single server (``url``), a cluster (``cluster_nodes``) or the primary
    behind sentinels (``sentinel_nodes``); give exactly one. Immutable once built."""

    __slots__ = (
        "url", "cluster_nodes", "sentinel_nodes", "sentinel_service", "sentinel_password", "username",
        "password", "tls", "tls_ca_file", "tls_cert_file", "tls_key_file", "tls_verify", "timeout_s",
    )

    def __init__(self, url: str = "", *, cluster_nodes: Sequence[str] = (), sentinel_nodes: Sequence[str] = (),
                 sentinel_service: str = "", sentinel_password: str = "", username: str = "", password: str = "",
                 tls: bool = False, tls_ca_file: str = "", tls_cert_file: str = "", tls_key_file: str = "",
                 tls_verify: bool = True, timeout_s: float) -> None:
        self.url = url
        """"redis://[user:password@]host:port/db", "rediss://..." (TLS) or "unix:///path?db=0"."""
        self.cluster_nodes = tuple(cluster_nodes)
        """Some nodes of a Redis Cluster as "host:port"; the rest is discovered."""
        self.sentinel_nodes = tuple(sentinel_nodes)
        """The sentinels as "host:port"; the primary named ``sentinel_service`` is found through them."""
        self.sentinel_service = sentinel_service
        self.sentinel_password = sentinel_password
        """Password of the sentinels themselves, if they need one."""
        self.username = username
        """ACL user; a user and password in the url take precedence."""
        self.password = password
        self.tls = tls
        """Connect with TLS (implied by a rediss:// url)."""
        self.tls_ca_file = tls_ca_file
        """CA bundle that signed the server certificate; empty: the system's."""
        self.tls_cert_file = tls_cert_file
        """Client certificate for mutual TLS, and its key (``tls_key_file``)."""
        self.tls_key_file = tls_key_file
        self.tls_verify = tls_verify
        """Verify the server certificate and host name."""
        self.timeout_s = timeout_s
        """Bound of one connect; coredis clients also bound each reply with it."""

    def ssl_context(self) -> ssl.SSLContext | None:
        """A new client TLS context from the settings, or None when TLS is not asked for."""
        if not (self.tls or self.url.startswith("rediss://")):
            return None
        context = ssl.create_default_context(cafile=self.tls_ca_file or None)
        if self.tls_cert_file:
            context.load_cert_chain(self.tls_cert_file, self.tls_key_file or None)
        if not self.tls_verify:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return context
