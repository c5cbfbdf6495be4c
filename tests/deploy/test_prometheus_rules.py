"""deploy/prometheus/: the alerting rules load in Prometheus's own checker, every alert is shown
firing (and silent when it should be) by promtool's rule unit tests, and the Alertmanager example
is valid and routes each severity to its receiver (amtool).

promtool comes with the Debian package `prometheus`, amtool with `prometheus-alertmanager`
(.ci/run installs both); without them these tests are skipped.
"""

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

PROMETHEUS = Path(__file__).resolve().parents[2] / "deploy" / "prometheus"
RULES = PROMETHEUS / "fastgate-alerts.yml"
RULE_TESTS = PROMETHEUS / "tests" / "fastgate-alerts.test.yml"
ALERTMANAGER = PROMETHEUS / "alertmanager.yml"
needs_promtool = pytest.mark.skipif(shutil.which("promtool") is None, reason="needs promtool (apt-get install prometheus)")
needs_amtool = pytest.mark.skipif(shutil.which("amtool") is None,
                                  reason="needs amtool (apt-get install prometheus-alertmanager)")


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(args, capture_output=True, text=True, timeout=60, cwd=PROMETHEUS)


def _alerts() -> list[dict]:
    return [rule for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"] if "alert" in rule]


@needs_promtool
def test_rules_pass_promtool_check():
    done = _run("promtool", "check", "rules", str(RULES))
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {len(_alerts())} rules found" in done.stdout


@needs_promtool
def test_rule_unit_tests_pass():
    done = _run("promtool", "test", "rules", str(RULE_TESTS))
    assert done.returncode == 0, done.stdout + done.stderr


def test_every_alert_is_unit_tested_firing_and_silent():
    """Each alert has a case where it fires and one where it does not (for has not passed, or the
    series are those of a healthy gateway)."""
    cases = [case for test in yaml.safe_load(RULE_TESTS.read_text())["tests"] for case in test["alert_rule_test"]]
    for alert in _alerts():
        name = alert["alert"]
        assert any(c["alertname"] == name and c["exp_alerts"] for c in cases), f"{name} is never shown firing"
        assert any(c["alertname"] == name and not c["exp_alerts"] for c in cases), f"{name} is never shown silent"
        assert alert["labels"]["severity"] in ("critical", "warning")
        assert {"summary", "description"} <= set(alert["annotations"])


@needs_amtool
def test_alertmanager_example_is_valid():
    done = _run("amtool", "check-config", str(ALERTMANAGER))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


@needs_amtool
@pytest.mark.parametrize("severity,receiver", [("critical", "on-call"), ("warning", "tickets")])
def test_alertmanager_routes_each_severity_to_its_webhook(severity, receiver):
    for alert in _alerts():
        if alert["labels"]["severity"] != severity:
            continue
        done = _run("amtool", "config", "routes", "test", f"--config.file={ALERTMANAGER}",
                    f"--verify.receivers={receiver}", f"alertname={alert['alert']}", f"severity={severity}")
        assert done.returncode == 0, f"{alert['alert']} does not reach {receiver}: {done.stdout}{done.stderr}"
    config = yaml.safe_load(ALERTMANAGER.read_text())
    assert all(c["url"].startswith("http") for r in config["receivers"] for c in r["webhook_configs"])
