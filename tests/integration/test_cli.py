"""The command line: -V, and -t on good and bad configs (exit code, file, field path, reason)."""

import textwrap

import pytest

import fastgate
from tests.support.gateway import REPO, run_cli
from tests.support.ports import free_port


def _output(result) -> str:
    return result.stdout + result.stderr


def test_version_is_printed():
    result = run_cli("-V")
    assert result.returncode == 0, _output(result)
    assert fastgate.__version__ in _output(result)


def test_shipped_default_config_checks_ok():
    result = run_cli("-t", "-c", str(REPO / "conf" / "gate.conf"))
    assert result.returncode == 0, _output(result)
    assert "ok" in _output(result).lower()


GOOD = """
[server]
workers = 2
pid_file = "{dir}/fastgate.pid"
error_log = "{dir}/error.log"

[http]
header_timeout = "1s"
max_body_size = "1MiB"

[[listeners]]
address = "127.0.0.1:{port}"

[[upstreams]]
name = "api"
servers = ["127.0.0.1:{port2}", "127.0.0.1:{port3}"]
connect_timeout = "250ms"

[[routes]]
name = "hello"
path = "/"
respond = {{ status = 200, body = "hi" }}

[[routes]]
hosts = ["api.example.com", "*.example.org"]
path_prefix = "/api/"
methods = ["GET", "POST"]
prefix_rewrite = "/"
host_rewrite = "internal"
upstream = "api"
max_body_size = "4KiB"
request_headers = {{ set = {{ "X-A" = "1" }}, add = {{ "X-B" = "2" }}, remove = ["X-C"] }}
response_headers = {{ remove = ["Server"] }}

[[routes]]
path_regex = "^/items/[0-9]+$"
upstream = "api"
request_id = false
"""


def test_complete_good_config_checks_ok(tmp_path):
    path = tmp_path / "good.conf"
    path.write_text(GOOD.format(dir=tmp_path, port=free_port(), port2=free_port(), port3=free_port()))
    result = run_cli("-t", "-c", str(path))
    assert result.returncode == 0, _output(result)
    assert "ok" in _output(result).lower()


_LISTENER = '[[listeners]]\naddress = "127.0.0.1:{port}"\n'
_UPSTREAM = '[[upstreams]]\nname = "api"\nservers = ["127.0.0.1:{port}"]\n'
_ROUTE_OK = '[[routes]]\npath = "/ok"\nrespond = {{ body = "ok" }}\n'

BAD = [
    pytest.param(
        _LISTENER + _UPSTREAM + _ROUTE_OK + _ROUTE_OK
        + '[[routes]]\npath = "/x"\nupstream = "api"\ncolour = "red"\n',
        ["routes[2]", "colour"], id="unknown-key-in-route"),
    pytest.param(
        _LISTENER + _UPSTREAM + _ROUTE_OK + '[[routes]]\npath = "/x"\nupstream = "missing"\n',
        ["routes[1].upstream", "missing"], id="route-names-unknown-upstream"),
    pytest.param(
        '[http]\nheader_timeout = "soon"\n' + _LISTENER + _ROUTE_OK,
        ["http.header_timeout"], id="bad-duration"),
    pytest.param(
        '[server]\nworkers = "many"\n' + _LISTENER + _ROUTE_OK,
        ["server.workers"], id="bad-workers"),
    pytest.param(
        _LISTENER + _UPSTREAM + '[[routes]]\npath = "/x"\nupstream = "api"\nrespond = {{ body = "x" }}\n',
        ["routes[0]"], id="upstream-and-respond"),
    pytest.param(
        _LISTENER + '[[routes]]\npath = "/x"\n',
        ["routes[0]"], id="neither-upstream-nor-respond"),
    pytest.param(
        _LISTENER + _UPSTREAM + '[[routes]]\npath_regex = "(unclosed"\nupstream = "api"\n',
        ["routes[0].path_regex"], id="bad-regex"),
    pytest.param(
        _LISTENER + '[[upstreams]]\nname = "api"\nservers = ["no-port-here"]\n' + _ROUTE_OK,
        ["upstreams[0].servers"], id="server-without-port"),
    pytest.param(
        '[[listeners]]\naddress = "not an address"\n' + _ROUTE_OK,
        ["listeners[0].address"], id="bad-listener-address"),
    pytest.param(
        _LISTENER + _ROUTE_OK + "[surprise]\nkey = 1\n",
        ["surprise"], id="unknown-table"),
    pytest.param(
        _LISTENER + "[[routes]\npath = \n",
        [], id="toml-syntax-error"),
]


@pytest.mark.parametrize("text, fragments", BAD)
def test_bad_config_fails_check_naming_file_and_field(tmp_path, text, fragments):
    path = tmp_path / "bad.conf"
    path.write_text(text.format(port=free_port()))
    result = run_cli("-t", "-c", str(path))
    output = _output(result)
    assert result.returncode == 1, output
    assert str(path) in output, output
    for fragment in fragments:
        assert fragment in output, output


def test_missing_config_file_fails_check(tmp_path):
    path = tmp_path / "absent.conf"
    result = run_cli("-t", "-c", str(path))
    assert result.returncode == 1, _output(result)
    assert str(path) in _output(result)


def test_signal_without_running_master_fails(tmp_path):
    path = tmp_path / "gate.conf"
    path.write_text(textwrap.dedent(f"""\
        [server]
        pid_file = "{tmp_path}/nobody.pid"
        """) + _LISTENER.format(port=free_port()) + _ROUTE_OK.format())
    result = run_cli("-s", "reload", "-c", str(path))
    assert result.returncode != 0, _output(result)
    assert _output(result).strip(), "a failed -s must say why"
