"""The expiry of the certificates the TLS listeners serve, as /metrics series.

These are not counted into the workers' seats like the other series: a
gauge there is summed over the workers, and a date summed is no date. They
are read when /metrics is scraped, from the certificates the answering worker
serves (every worker of a generation serves the same ones), one series per
certificate: ``listener`` (its name or address), ``certificate`` (the file)
and ``name`` (the first DNS name the certificate is valid for).
"""

from fastgate.observe.metrics import label

FAMILY = "fastgate_tls_certificate_expiry_timestamp_seconds"


def certificate_expiry_series(listeners) -> dict:
    """{(family, labels, 0): notAfter in Unix seconds} for each certificate of each TLS listener
    in ``listeners`` (the ListenerSpecs of config/listeners.py)."""
    series = {}
    for spec in listeners:
        if spec.tls is None:
            continue
        for info in spec.tls.certificates:
            labels = label(listener=spec.label, certificate=info.cert_path, name=info.names[0] if info.names else "")
            series[(FAMILY, labels, 0)] = info.not_after_s
    return series
