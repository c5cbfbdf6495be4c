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
