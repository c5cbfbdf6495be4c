"""deploy/grafana/fastgate.json and deploy/prometheus/fastgate-alerts.yml read only what a real
gateway exports: every metric name their PromQL reads has series on /metrics after some traffic,
with the labels the queries select and group by.

The gateway serves a route to a live upstream, one to a dead port (connect errors), one whose
upstream resets (failures, retries), one that times out, one with a rate limit that refuses, a
TLS listener (certificate expiry), and it is reloaded once.
"""

import json
from pathlib import Path

import httpx
import pytest
import yaml

from tests.support.certs import self_signed_certificate
from tests.support.gateway import Gateway
from tests.support.metrics import settled
from tests.support.ports import free_port
from tests.support.promql import reads
from tests.support.wait import wait_until

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
TARGET_LABELS = frozenset(("job", "instance"))
"""Labels Prometheus adds to every scraped series; /metrics does not carry them."""


def _dashboard_queries() -> list[str]:
    dashboard = json.loads((DEPLOY / "grafana" / "fastgate.json").read_text())
    queries = [target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])]
    queries += [v["query"]["query"] for v in dashboard["templating"]["list"] if v["type"] == "query"]
    queries += [a["expr"] for a in dashboard["annotations"]["list"] if "expr" in a]
    return queries


def _alert_queries() -> list[str]:
    rules = yaml.safe_load((DEPLOY / "prometheus" / "fastgate-alerts.yml").read_text())
    return [rule["expr"] for group in rules["groups"] for rule in group["rules"]]


class _TlsGateway(Gateway):
    """The test gateway with one more listener, "public", on TLS."""

    def __init__(self, directory: Path, config: dict, certificate: tuple[str, str]) -> None:
        super().__init__(directory, config, workers=2)
        self.certificate = certificate
        self.tls_port = 0

    def start(self) -> "_TlsGateway":
        self.tls_port = free_port()
        return super().start()

    def full_config(self, config: dict) -> dict:
        full = super().full_config(config)
        cert, key = self.certificate
        full["listeners"] = [*full["listeners"], {"address": f"127.0.0.1:{self.tls_port}", "name": "public",
                                                  "tls": {"certificates": [{"cert": cert, "key": key}]}}]
        return full


@pytest.fixture(scope="module")
def exported(module_gateways, module_upstream, tmp_path_factory) -> dict[str, set[str]]:
    """Sample name -> the label names its series carry, from a gateway that saw every kind of traffic."""
    upstream, tmp_path = module_upstream, tmp_path_factory.mktemp("dashboard")
    dead = f"127.0.0.1:{free_port()}"
    config = {
        "upstreams": [{"name": "up", "servers": [upstream.address, f"localhost:{upstream.port}"],  # one origin, twice "health": {"path": "/healthz", "interval": "1s", "timeout": "500ms"},
                       "breaker_error_ratio": 0.9},
                      {"name": "dead", "servers": [dead], "connect_retries": 0}],
        "routes": [{"name": "api", "path_prefix": "/api/", "upstream": "up"},
                   {"name": "slow", "path_prefix": "/slow/", "upstream": "up", "try_timeout": "200ms", "retries": 0},
                   {"name": "dead", "path_prefix": "/dead/", "upstream": "dead"},
                   {"name": "limited", "path": "/limited", "respond": {"body": "ok"},
                    "limits": [{"key": ["ip"], "rate": "2/m"}]}],
    }
    gw = _TlsGateway(tmp_path / "gw", config, self_signed_certificate(str(tmp_path)))
    module_gateways.started.append(gw)
    gw.start()
    with httpx.Client(timeout=10) as client:
        assert client.get(gw.url("/api/a")).status_code == 200
        assert client.get(gw.url("/api/b?fail=reset")).status_code == 502   # a failure, after a retry
        assert client.get(gw.url("/slow/a?delay=2")).status_code == 504     # a timeout
        assert client.get(gw.url("/dead/a")).status_code == 502             # a connect error
        assert [client.get(gw.url("/limited")).status_code for _ in range(3)] == [200, 200, 429]
    assert gw.cli("-s", "reload").returncode == 0
    wait_until(lambda: "reloaded: generation 2" in gw.log_text(), "the reload is done")
    found: dict[str, set[str]] = {}
    for name, labels in settled(gw):
        found.setdefault(name, set()).update(label for label, _ in labels)
    return found


def _check(queries: list[str], exported: dict[str, set[str]]) -> None:
    assert queries
    for query in queries:
        read = reads(query)
        assert read.metrics, f"no metric found in {query!r}"
        for metric, labels in read.selectors:
            assert metric in exported, f"{metric} (in {query!r}) is not on /metrics"
            assert labels - TARGET_LABELS <= exported[metric], f"{metric} has no label {labels - exported[metric]}"
        for label in read.grouping - TARGET_LABELS:
            assert any(label in exported[m] for m in read.metrics), f"no series of {query!r} carries {label!r}"


def test_dashboard_reads_only_exported_metrics(exported):
    _check(_dashboard_queries(), exported)


def test_alert_rules_read_only_exported_metrics(exported):
    _check(_alert_queries(), exported)


def test_the_check_sees_a_misspelt_metric_or_label(exported):
    with pytest.raises(AssertionError, match="fastgate_request_total"):
        _check(['sum(rate(fastgate_request_total[5m]))'], exported)
    with pytest.raises(AssertionError, match="stauts"):
        _check(['sum(rate(fastgate_requests_total{stauts="5xx"}[5m]))'], exported)
    with pytest.raises(AssertionError, match="upstream"):
        _check(['sum by (upstream) (rate(fastgate_requests_total[5m]))'], exported)
    with pytest.raises(ValueError, match="histogram_quantil"):
        _check(['histogram_quantil(0.9, rate(fastgate_request_duration_seconds_bucket[5m]))'], exported)
