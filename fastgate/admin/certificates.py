"""The certificate series of /metrics: what each TLS listener serves, and how its ACME orders go.

Read at scrape time, not counted (a gauge counted in the workers' seats is
summed over them, and a date summed is no date): the expiry of every
certificate the answering worker's config serves, one series per certificate
by ``listener`` (its name or address), ``certificate`` (the file) and
``name`` (its first DNS name) (the placeholder of an ACME listener
included, which expires a day after it was made), and from each managed
certificate's status file in the ACME storage (acme/storage.py) the
certificates issued, the failed orders and, after a failure, when the next
order is due. A few small files per scrape; nothing on the request path.
"""

from fastgate.acme.settings import ManagedCertificate
from fastgate.acme.storage import CertificateStore
from fastgate.config.listeners import ListenerSpec
from fastgate.observe.metrics import label

EXPIRY = "fastgate_tls_certificate_expiry_timestamp_seconds"


def certificate_series(listeners: tuple[ListenerSpec, ...], managed: tuple[ManagedCertificate, ...]) -> dict:
    """{(family, labels, 0): value} of the certificate families (observe/metrics.py FAMILIES)."""
    series = {}
    for spec in listeners:
        if spec.tls is None:
            continue
        for info in spec.tls.certificates:
            labels = label(listener=spec.label, certificate=info.cert_path, name=info.names[0] if info.names else "")
            series[(EXPIRY, labels, 0)] = info.not_after_s
    for certificate in managed:
        status = CertificateStore(certificate).status()
        labels = label(certificate=certificate.name)
        series[("fastgate_acme_certificates_issued_total", labels, 0)] = float(status.issued)
        series[("fastgate_acme_failures_total", labels, 0)] = float(status.failures)
        series[("fastgate_acme_retry_timestamp_seconds", labels, 0)] = status.retry_at
    return series
