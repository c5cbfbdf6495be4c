"""TLS settings built once, in the master, before the workers are forked.

- certificates.py: reading and checking a certificate and its key, and the
  names (SAN, wildcards) a certificate serves;
- server.py: a TLS listener's contexts, one per certificate, chosen by SNI;
- client.py: an upstream's client context (verification, SNI, mTLS);
- failures.py: why a client's handshake failed, in a few bounded words.

Contexts are made before fork so that every worker of one generation holds
the same OpenSSL context, and with it the same session ticket keys: a client
resumes its session whichever worker the kernel hands its next connection to.
This package imports nothing else of fastgate (pyproject.toml's contracts):
the downstream handshake lives in transport/tls.py, the upstream connect in
upstream/pool.py.
"""
