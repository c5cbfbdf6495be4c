"""The server-set series of /metrics, read from the shared server table at scrape time (not counted).

``fastgate_upstream_servers`` is how many servers each upstream serves now
(after DNS discovery and admin API edits); ``fastgate_discovery_resolutions_total``
counts the resolutions of each discovered upstream's DNS name by outcome
("ok": it gave servers; "failed": the last good set stayed).
"""

from fastgate.observe.metrics import label
from fastgate.upstream.server_table import ServerTable


def server_series(table: ServerTable, configs) -> dict:
    """{(family, labels, 0): value} for the upstream configs (schema Upstream)."""
    series = {}
    for config in configs:
        servers = table.read(config.name)
        series[("fastgate_upstream_servers", label(upstream=config.name), 0)] = float(len(servers.effective()))
        if config.discovery is not None:
            for outcome, count in (("ok", servers.resolved), ("failed", servers.failed)):
                series[("fastgate_discovery_resolutions_total", label(upstream=config.name, outcome=outcome), 0)] = \
                    float(count)
    return series
