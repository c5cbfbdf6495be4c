"""The [upstreams.discovery] table: defaults, and what is refused at load (file, field, reason)."""

import pytest

from fastgate.config.errors import ConfigError
from fastgate.config.load import load_config

BASE = '[[listeners]]\naddress = "127.0.0.1:8080"\n[[upstreams]]\nname = "u"\n'


def load(tmp_path, text: str):
    path = tmp_path / "gate.conf"
    path.write_text(text)
    return load_config(str(path))


def test_defaults_and_an_empty_start(tmp_path):
    loaded = load(tmp_path, BASE + '[upstreams.discovery]\nname = "api.test"\nport = 8080\n')
    discovery = loaded.config.upstreams[0].discovery
    assert (discovery.type, discovery.interval, discovery.timeout, discovery.resolvers) == ("A", 30.0, 2.0, [])
    assert loaded.upstreams["u"].servers == () and loaded.servers.read("u").effective() == []


@pytest.mark.parametrize("text, field, reason", [
    ('servers = ["127.0.0.1:1"]\n[upstreams.discovery]\nname = "a.test"\nport = 80\n', "upstreams[0].servers",
     "leave servers out"),
    ('[upstreams.discovery]\nname = "a.test"\n', "upstreams[0].discovery.port", "needs the servers' port"),
    ('[upstreams.discovery]\nname = "_x._tcp.a.test"\ntype = "SRV"\nport = 80\n', "upstreams[0].discovery.port",
     "SRV records carry"),
    ('[upstreams.discovery]\nname = "not a name"\nport = 80\n', "upstreams[0].discovery.name", "not a DNS name"),
    ('[upstreams.discovery]\nname = "a.test"\nport = 80\ninterval = "200ms"\n', "upstreams[0].discovery.interval",
     "at least 1s"),
    ('[upstreams.discovery]\nname = "a.test"\nport = 80\ninterval = "2s"\ntimeout = "5s"\n',
     "upstreams[0].discovery.timeout", "at most interval"),
    ('[upstreams.discovery]\nname = "a.test"\nport = 80\nresolvers = ["dns.google"]\n',
     "upstreams[0].discovery.resolvers[0]", "not a name"),
    ('[upstreams.discovery]\nname = "a.test"\nport = 80\nresolvers = ["127.0.0.1:0"]\n',
     "upstreams[0].discovery.resolvers[0]", "no valid port"),
    ('[upstreams.discovery]\nname = "a.test"\nport = 80\n[upstreams.health]\n', "upstreams[0].health",
     "do not follow discovered servers"),
    ('[upstreams.discovery]\nname = "a.test"\nport = 80\ntype = "MX"\n', "upstreams[0].discovery.type", ""),
    ('', "upstreams[0].servers", "or a discovery table"),
])
def test_bad_tables_are_refused_with_field_and_reason(tmp_path, text, field, reason):
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, BASE + text)
    assert caught.value.field == field and reason in caught.value.reason
    assert caught.value.file.endswith("gate.conf")
