"""The certificate every proxy of an https scenario serves: self-signed for 127.0.0.1, made per run."""

import subprocess
from pathlib import Path


def self_signed(directory: Path) -> tuple[Path, Path]:
    """Write cert.pem and key.pem (EC P-256, one day) into ``directory``, once; return their paths.

    The same key type for every proxy, so their handshakes cost the same.
    """
    cert, key = directory / "cert.pem", directory / "key.pem"
    if not cert.exists():
        directory.mkdir(parents=True, exist_ok=True)
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                        "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                        "-keyout", str(key), "-out", str(cert)], capture_output=True, timeout=30, check=True)
    return cert, key
