"""The [upstreams.health] table: defaults, what is refused (file, field, reason), what it compiles to."""

import pytest

from fastgate.config.errors import ConfigError
from fastgate.config.load import load_config
from fastgate.health.checker import targets
from fastgate.health.settings import expected_statuses, probe_request

BASE = ('[[listeners]]\naddress = "127.0.0.1:8080"\n'
        '[[upstreams]]\nname = "u"\nservers = ["127.0.0.1:9000", "127.0.0.1:9001"]\n')


def load(tmp_path, text: str):
    path = tmp_path / "gate.conf"
    path.write_text(text)
    return load_config(str(path))


def test_defaults_and_compiled_probe(tmp_path):
    loaded = load(tmp_path, BASE + '[upstreams.health]\n')
    health = loaded.upstreams["u"].health
    assert (health.path, health.interval, health.timeout, health.rise, health.fall) == ("/", 5.0, 2.0, 2, 3)
    assert expected_statuses(health) == frozenset(range(200, 400))
    first, second = targets(loaded)
    assert (first.address, first.slot, second.address, second.slot) == ("127.0.0.1:9000", 0, "127.0.0.1:9001", 1)
    assert first.request == (b"GET / HTTP/1.1\r\nHost: 127.0.0.1:9000\r\nUser-Agent: fastgate-health-check\r\n"
                             b"Accept: */*\r\nConnection: close\r\n\r\n")


def test_expect_mixes_statuses_and_classes_and_host_overrides(tmp_path):
    loaded = load(tmp_path, BASE + '[upstreams.health]\npath = "/healthz?full=1"\nexpect = [204, "3xx"]\n'
                                   'host = "api.internal"\ninterval = "2s"\ntimeout = "1s"\n')
    health = loaded.upstreams["u"].health
    assert expected_statuses(health) == frozenset([204, *range(300, 400)])
    assert probe_request(health, "127.0.0.1:9000").startswith(
        b"GET /healthz?full=1 HTTP/1.1\r\nHost: api.internal\r\n")


def test_upstreams_without_health_table_have_no_slots(tmp_path):
    loaded = load(tmp_path, BASE)
    assert loaded.upstreams["u"].health is None
    assert loaded.health.slots == {}
    assert [s.health_slot for s in loaded.upstreams["u"].servers] == [-1, -1]


@pytest.mark.parametrize("health,field,reason", [
    ('timeout = "2s"\ninterval = "2s"', "timeout", "shorter than interval"),
    ('timeout = "0s"', "timeout", "greater than zero"),
    ('interval = "0s"', "interval", "greater than zero"),
    ("rise = 0", "rise", "between 1 and 100"),
    ("fall = 101", "fall", "between 1 and 100"),
    ('path = "healthz"', "path", "must start with '/'"),
    ('path = "/health z"', "path", "visible ASCII"),
    ("expect = []", "expect", "at least one status"),
    ('expect = [200, "6xx"]', "expect[1]", "is not a status"),
    ("expect = [99]", "expect[0]", "is not a status"),
    ('host = "a b"', "host", "is not a host name"),
    ('interval = "soon"', "interval", "expected a duration"),
    ('method = "HEAD"', "", "unknown field `method`"),
])
def test_bad_health_table_names_file_field_and_reason(tmp_path, health, field, reason):
    with pytest.raises(ConfigError) as info:
        load(tmp_path, BASE + "[upstreams.health]\n" + health + "\n")
    error = info.value
    assert error.field == "upstreams[0].health" + (f".{field}" if field else "")
    assert reason in error.reason


def test_reload_carries_verdicts_over_by_upstream_and_address(tmp_path):
    first = load(tmp_path, BASE + '[upstreams.health]\n')
    first.health.record(1, False, 2, 3)  # 127.0.0.1:9001 is down
    path = tmp_path / "gate.conf"
    path.write_text(BASE.replace('"127.0.0.1:9000", ', '') + '[upstreams.health]\n')
    second = load_config(str(path), first)
    assert [s.address for s in second.upstreams["u"].servers] == ["127.0.0.1:9001"]
    assert not second.health.is_up(second.upstreams["u"].servers[0].health_slot)
