"""Config loading: the shipped config loads; every kind of mistake names file, field and reason."""

from pathlib import Path

import pytest

from fastgate.config.errors import ConfigError
from fastgate.config.load import load_config
from fastgate.config.units import parse_duration, parse_size
from fastgate.transport.h2_settings import H2Limits

ROOT = Path(__file__).resolve().parents[2]
BASE = '[[listeners]]\naddress = "127.0.0.1:8080"\n[[upstreams]]\nname = "u"\nservers = ["127.0.0.1:9000"]\n'


def load(tmp_path, text: str):
    path = tmp_path / "gate.conf"
    path.write_text(text)
    return load_config(str(path))


def test_shipped_config_loads():
    loaded = load_config(str(ROOT / "conf" / "gate.conf"))
    assert [r.name for r in loaded.router.any_host]  # routes compiled
    assert loaded.config.listeners[0].address == "0.0.0.0:8080"


@pytest.mark.parametrize("text,field,reason", [
    (BASE + '[[routes]]\nupstream = "u"\n[[routes]]\nupstream = "nope"\n', "routes[1].upstream", "no upstream named 'nope'"),
    (BASE + '[[routes]]\nupstrem = "u"\n', "routes[0]", "unknown field `upstrem`"),
    (BASE + '[http]\nheader_timeout = "10 parsecs"\n', "http.header_timeout", "expected a duration"),
    (BASE + '[http]\nmax_body_size = "big"\n', "http.max_body_size", "expected a size"),
    (BASE + '[[routes]]\nupstream = "u"\npath_regex = "("\n', "routes[0].path_regex", "not a valid regular expression"),
    (BASE + '[[routes]]\nupstream = "u"\npath = "/a"\npath_prefix = "/b"\n', "routes[0]", "at most one of"),
    (BASE + '[[routes]]\nrespond = {status = 200}\nupstream = "u"\n', "routes[0]", "exactly one of"),
    (BASE + '[[routes]]\nupstream = "u"\nmethods = ["get"]\n', "routes[0].methods[0]", "upper-case"),
    ('[[listeners]]\naddress = "nowhere"\n', "listeners[0].address", "not host:port"),
    (BASE + '[[upstreams]]\nname = "u"\nservers = ["127.0.0.1:1"]\n', "upstreams[1].name", "defined twice"),
    (BASE + '[server]\nworkers = 0\n', "server.workers", "between 1 and 512"),
    (BASE + '[[routes]]\nupstream = "u"\nrequest_headers = {set = {"X-A" = "a\\nb"}}\n', "routes[0].request_headers.set.X-A", "CR, LF"),
    ('[[listeners]]\naddress = "127.0.0.1:1"\n[[upstreams]]\nname = "u"\nservers = [{address = "127.0.0.1:2", weight = 0}]\n',
     "upstreams[0].servers[0].weight", "between 1 and 1000"),
    ('[[listeners]]\naddress = "127.0.0.1:1"\n[[upstreams]]\nname = "u"\nservers = ["127.0.0.1:2"]\nbalance = "consistent_hash"\nhash_key = "body"\n',
     "upstreams[0].hash_key", "is not \"ip\""),
    ('[[listeners]]\naddress = "127.0.0.1:1"\n[[upstreams]]\nname = "u"\nservers = ["127.0.0.1:2"]\nbalance = "fastest"\n',
     "upstreams[0].balance", "Invalid enum value 'fastest'"),
    (BASE + '[[routes]]\nupstream = "u"\nretries = 11\n', "routes[0].retries", "between 0 and 10"),
    (BASE + '[[routes]]\nupstream = "u"\nidle_timeout = "0s"\n', "routes[0].idle_timeout", "greater than zero"),
    (BASE + '[[routes]]\nrespond = {status = 200}\ntotal_timeout = "1s"\n', "routes[0].total_timeout",
     "only a route with an upstream"),
    (BASE + 'max_connections = -1\n', "upstreams[0].max_connections", "cannot be negative"),
    (BASE + 'breaker_error_ratio = 1.5\n', "upstreams[0].breaker_error_ratio", "between 0 and 1"),
    (BASE + 'breaker_error_ratio = 0.5\nbreaker_min_requests = 0\n', "upstreams[0].breaker_error_ratio",
     "breaker_min_requests >= 1"),
    ('[http2]\nmax_frame_size = "8KiB"\n[[listeners]]\naddress = "127.0.0.1:1"\n', "http2.max_frame_size",
     "between 16KiB and 16MiB-1"),
    ('[http2]\nmax_concurrent_streams = 0\n[[listeners]]\naddress = "127.0.0.1:1"\n',
     "http2.max_concurrent_streams", "between 1 and 65535"),
    ('[http2]\nconnection_window_size = "16KiB"\n[[listeners]]\naddress = "127.0.0.1:1"\n',
     "http2.connection_window_size", "between 65535 bytes and 2GiB-1"),
    ('[http2]\nreset_window = "0s"\n[[listeners]]\naddress = "127.0.0.1:1"\n', "http2.reset_window",
     "greater than zero"),
    ('[http2]\nmax_header_list_size = 0\n[[listeners]]\naddress = "127.0.0.1:1"\n',
     "http2.max_header_list_size", "between 1 byte and 16MiB"),
    (BASE + '[[routes]]\nupstream = "u"\ngrpc_retry_methods = ["pkg.Svc/Do"]\n', "routes[0].grpc_retry_methods[0]",
     "is not \"/package.Service/Method\""),
    (BASE + '[upstreams.health]\ngrpc_service = ""\n', "upstreams[0].health.grpc_service", "need protocol = \"h2\""),
    (BASE + 'protocol = "h3"\n', "upstreams[0].protocol", "Invalid enum value 'h3'"),
    (BASE + 'protocol = "h2"\nmax_streams_per_connection = 0\n', "upstreams[0].max_streams_per_connection",
     "between 1 and"),
])
def test_bad_config_names_file_field_and_reason(tmp_path, text, field, reason):
    with pytest.raises(ConfigError) as info:
        load(tmp_path, text)
    error = info.value
    assert error.file.endswith("gate.conf")
    assert error.field == field
    assert reason in error.reason
    assert str(error).startswith(f"{error.file}: {field}: ")


def test_toml_syntax_error_names_the_line(tmp_path):
    with pytest.raises(ConfigError, match="line 2"):
        load(tmp_path, '[server]\nworkers = = 2\n')


def test_missing_file():
    with pytest.raises(ConfigError, match="cannot read"):
        load_config("/nonexistent/gate.conf")


@pytest.mark.parametrize("text,seconds", [("250ms", 0.25), ("5s", 5.0), ("2m", 120.0), ("1h", 3600.0), (3, 3.0)])
def test_durations(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text,size", [("512", 512), ("16KiB", 16384), ("1MiB", 1 << 20), ("1GB", 10**9), (7, 7)])
def test_sizes(text, size):
    assert parse_size(text) == size


def test_a_route_without_timeouts_of_its_own_shares_its_upstreams(tmp_path):
    loaded = load(tmp_path, BASE.replace('servers', 'connect_timeout = "2s"\ntry_timeout = "3s"\nservers') +
                  '[[routes]]\npath = "/a"\nupstream = "u"\n'
                  '[[routes]]\npath = "/b"\nupstream = "u"\ntotal_timeout = "9s"\nretries = 4\n')
    group = loaded.upstreams["u"]
    a, b = (loaded.router.match(b"", path, b"GET") for path in (b"/a", b"/b"))
    assert a.timeouts is group.timeouts and a.retry is group.retry
    t = b.timeouts
    assert (t.connect_s, t.try_s, t.total_s, t.idle_s) == (2.0, 3.0, 9.0, 60.0)
    assert b.retry.retries == 4 and b.retry.group is group


def test_http2_limits_default_to_the_http_ones(tmp_path):
    loaded = load(tmp_path, '[http]\nmax_header_size = "20KiB"\n[[listeners]]\naddress = "127.0.0.1:1"\n')
    limits = H2Limits(loaded.config.http2, loaded.config.http)
    assert limits.max_header_list_bytes == 20 * 1024
    assert (limits.max_concurrent_streams, limits.max_frame_bytes, limits.connection_window_bytes) == (128, 16384, 1 << 20)
