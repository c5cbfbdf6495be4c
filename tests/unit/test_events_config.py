"""The [events] table: off by default, defaults as documented, every mistake named by field path."""

import pytest

from fastgate.config.errors import ConfigError
from fastgate.config.load import load_config
from fastgate.observe.events import describe_target

BASE = '[[listeners]]\naddress = "127.0.0.1:8080"\n'


def load(tmp_path, events: str):
    path = tmp_path / "gate.conf"
    path.write_text(BASE + events)
    return load_config(str(path))


def test_events_are_off_by_default(tmp_path):
    assert load(tmp_path, "").config.events is None


def test_defaults(tmp_path):
    events = load(tmp_path, '[events]\nsink = "nats"\nurl = "nats://127.0.0.1:4222"\n').config.events
    assert (events.subject, events.max_batch, events.max_buffer, events.stream_max_len, events.timeout) == \
        ("fastgate.requests", 256, 10000, 100000, 1.0)


@pytest.mark.parametrize("events", [
    '[events]\nsink = "nats"\nurl = "tls://user:pw@nats.example.com:4222"\nsubject = "gw.eu-1.requests"\n',
    '[events]\nsink = "redis"\nurl = "rediss://user:pw@10.0.0.7:6380/2"\nsubject = "fg:events"\ntimeout = "250ms"\n',
    '[events]\nsink = "redis"\nurl = "unix:///run/redis/redis.sock"\nstream_max_len = 0\n',
])
def test_good_tables_load(tmp_path, events):
    assert load(tmp_path, events).config.events is not None


@pytest.mark.parametrize("events,field,reason", [
    ('[events]\nsink = "kafka"\nurl = "kafka://x:9092"\n', "events.sink", "Invalid enum value 'kafka'"),
    ('[events]\nsink = "nats"\n', "events", "missing required field `url`"),
    ('[events]\nsink = "nats"\nurl = "redis://127.0.0.1:6379"\n', "events.url",
     "sink = 'nats' needs a nats:// or tls:// url"),
    ('[events]\nsink = "redis"\nurl = "nats://127.0.0.1:4222"\n', "events.url",
     "sink = 'redis' needs a redis:// or rediss:// or unix:// url"),
    ('[events]\nsink = "redis"\nurl = "http://127.0.0.1:6379"\n', "events.url", "needs a redis://"),
    ('[events]\nsink = "nats"\nurl = "nats://:4222"\n', "events.url", "needs a host"),
    ('[events]\nsink = "nats"\nurl = "nats://127.0.0.1:port"\n', "events.url", "is not a url"),
    ('[events]\nsink = "redis"\nurl = "unix://"\n', "events.url", "needs the path of the socket"),
    ('[events]\nsink = "nats"\nurl = "nats://127.0.0.1:4222"\nsubject = "requests.>"\n', "events.subject",
     "not a NATS subject"),
    ('[events]\nsink = "nats"\nurl = "nats://127.0.0.1:4222"\nsubject = "a..b"\n', "events.subject",
     "not a NATS subject"),
    ('[events]\nsink = "nats"\nurl = "nats://127.0.0.1:4222"\nsubject = "a b"\n', "events.subject",
     "not a NATS subject"),
    ('[events]\nsink = "redis"\nurl = "redis://127.0.0.1:6379"\nsubject = ""\n', "events.subject", "must not be empty"),
    ('[events]\nsink = "redis"\nurl = "redis://127.0.0.1:6379"\nmax_batch = 0\n', "events.max_batch", "between 1"),
    ('[events]\nsink = "redis"\nurl = "redis://127.0.0.1:6379"\nmax_buffer = 0\n', "events.max_buffer", "between 1"),
    ('[events]\nsink = "redis"\nurl = "redis://127.0.0.1:6379"\nstream_max_len = -1\n', "events.stream_max_len",
     "cannot be negative"),
    ('[events]\nsink = "redis"\nurl = "redis://127.0.0.1:6379"\ntimeout = "0s"\n', "events.timeout",
     "greater than zero"),
    ('[events]\nsink = "redis"\nurl = "redis://127.0.0.1:6379"\ntimeout = "soon"\n', "events.timeout",
     "expected a duration"),
    ('[events]\nsink = "redis"\nurl = "redis://127.0.0.1:6379"\ntls_ca_file = "/etc/hostname"\n',
     "events.tls_ca_file", "only used with a tls:// or rediss:// url"),
    ('[events]\nsink = "redis"\nurl = "rediss://127.0.0.1:6379"\ntls_ca_file = "/nonexistent/ca.pem"\n',
     "events.tls_ca_file", "no such file"),
    ('[events]\nsink = "nats"\nurl = "nats://127.0.0.1:4222"\nbatch = 5\n', "events", "unknown field `batch`"),
])
def test_bad_events_table_names_field_and_reason(tmp_path, events, field, reason):
    with pytest.raises(ConfigError) as info:
        load(tmp_path, events)
    assert info.value.field == field
    assert reason in info.value.reason


def test_log_lines_name_the_sink_without_credentials(tmp_path):
    events = load(tmp_path, '[events]\nsink = "redis"\nurl = "redis://app:s3cret@10.0.0.7:6379/0"\n'
                            'subject = "fg:events"\n').config.events
    assert describe_target(events) == "redis://10.0.0.7:6379 stream fg:events"


def test_nats_sink_without_nats_py_is_refused(tmp_path, monkeypatch):
    import importlib.util
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "nats" else find_spec(name, *a))
    with pytest.raises(ConfigError) as info:
        load(tmp_path, '[events]\nsink = "nats"\nurl = "nats://127.0.0.1:4222"\n')
    assert info.value.field == "events.sink"
    assert "pip install 'fastgate[events]'" in info.value.reason
