"""Reading a test gateway's /metrics the way Prometheus would: parsed by its client library."""

import time

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.support.wait import wait_until


def admin_get(gw, path: str, **kwargs) -> httpx.Response:
    return httpx.get(f"http://127.0.0.1:{gw.admin_port}{path}", timeout=10, **kwargs)


def scrape(gw) -> dict:
    """{(sample name, frozenset of labels): value} from /metrics, parsed by the Prometheus client library."""
    response = admin_get(gw, "/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    found = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            found[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return found


def settled(gw) -> dict:
    """/metrics once two scrapes a tick apart agree: workers publish their counts on every clock tick."""
    scrapes = [scrape(gw)]

    def agree() -> bool:
        time.sleep(0.6)  # the test gateways' clock ticks every 0.5 s
        scrapes.append(scrape(gw))
        return scrapes[-1] == scrapes[-2]

    wait_until(agree, "the published numbers settle")
    return scrapes[-1]


def value(found: dict, name: str, **labels: str) -> float:
    return found.get((name, frozenset(labels.items())), 0.0)
