"""Certificates from an ACME (RFC 8555) directory for TLS listeners with ``tls.acme``.

- settings.py: what the config asks for, compiled at load (ManagedCertificate);
- storage.py: the storage directory: account keys, certificates, their status, pending challenges;
- challenge.py: the HTTP-01 answers the workers give on /.well-known/acme-challenge/;
- tls_alpn.py: TLS-ALPN-01 for the manager: the challenge type and the certificate that answers it;
- tls_alpn_answers.py: TLS-ALPN-01 for the workers: which handshakes get the challenge certificate;
- issuer.py: one order, made with certbot's ``acme`` package;
- manager.py: the helper process that orders, renews and backs off, and asks the master to reload;
- process.py: that helper's role for the master (master/helper.py).

The ordering runs once per gateway, in one helper process; the workers only
read files: a challenge's answer (HTTP-01's, or TLS-ALPN-01's key and certificate), and (after the reload the helper asks for)
the new certificate.
"""
