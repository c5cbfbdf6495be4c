"""A self-signed certificate for 127.0.0.1, made by the openssl command, for test servers that speak TLS."""

import subprocess
from pathlib import Path


def self_signed_certificate(directory: str) -> tuple[str, str]:
    """Write server.crt and server.key (EC P-256, valid one day) into ``directory``; return their paths.

    The certificate is its own CA: clients trust it with ``cafile=<server.crt>``.
    """
    cert, key = str(Path(directory) / "server.crt"), str(Path(directory) / "server.key")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", key, "-out", cert],
                   capture_output=True, timeout=30, check=True)
    return cert, key


def write_leaf(directory: Path, name: str, leaf) -> None:
    """A trustme leaf certificate as ``name``.key and ``name``.pem (its chain, leaf first)."""
    leaf.private_key_pem.write_to_path(str(Path(directory) / f"{name}.key"))
    with open(Path(directory) / f"{name}.pem", "wb") as f:
        for pem in leaf.cert_chain_pems:
            f.write(pem.bytes())


def site_pki(directory: Path, host: str = "site.test"):
    """A new trustme CA (returned) with its certificate for ``host`` as site.pem and site.key, and the
    CA's own as ca.pem, in ``directory``."""
    import trustme

    authority = trustme.CA()
    write_leaf(directory, "site", authority.issue_cert(host))
    authority.cert_pem.write_to_path(str(Path(directory) / "ca.pem"))
    return authority
