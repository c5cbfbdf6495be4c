"""`fastgate --print-schema`: the JSON Schema editors check gate.conf with agrees with the loader.

Every config the project ships or documents (conf/gate.conf, each TOML example
of the README, the Kubernetes ConfigMap's, a test gateway's) is valid under
the schema, checked by the `jsonschema` package (Draft 7, as taplo checks);
and a config the loader's decoding refuses (an unknown key, a bad duration,
size or choice) the schema refuses too, at the same place.
"""

import json
import re
import tomllib
from pathlib import Path

import jsonschema
import msgspec
import pytest

from fastgate.config.json_schema import config_schema, field_docs
from fastgate.config.schema import Config, Upstream
from fastgate.config.units import decode_hook
from tests.support.gateway import Gateway, run_cli

ROOT = Path(__file__).resolve().parents[2]
VALIDATOR = jsonschema.Draft7Validator(config_schema())


def _readme_examples() -> list[str]:
    return re.findall(r"```toml\n(.*?)```", (ROOT / "README.md").read_text(), re.S)


def _decodes(document: dict) -> bool:
    try:
        msgspec.convert(document, Config, dec_hook=decode_hook)
    except msgspec.ValidationError:
        return False
    return True


def test_the_schema_is_a_valid_draft_7_schema():
    jsonschema.Draft7Validator.check_schema(config_schema())


def test_print_schema_writes_it():
    done = run_cli("--print-schema")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == config_schema()


def test_every_field_is_described_with_its_docstring_and_default():
    upstream = config_schema()["$defs"]["Upstream"]["properties"]
    assert upstream["retries"]["description"] == field_docs(Upstream)["retries"]
    assert upstream["retries"]["default"] == 1
    assert upstream["connect_timeout"]["default"] == 5.0  # a Duration default, in seconds
    assert upstream["balance"]["enum"][0] == "consistent_hash"


def test_shipped_config_is_valid():
    document = tomllib.loads((ROOT / "conf" / "gate.conf").read_text())
    assert list(VALIDATOR.iter_errors(document)) == []


@pytest.mark.parametrize("example", _readme_examples())
def test_readme_examples_are_valid(example):
    document = tomllib.loads(example)
    assert _decodes(document)
    assert [e.message for e in VALIDATOR.iter_errors(document)] == []


def test_a_test_gateways_config_is_valid(tmp_path):
    gateway = Gateway(tmp_path, {
        "upstreams": [{"name": "u", "servers": ["127.0.0.1:9", {"address": "127.0.0.1:10", "weight": 2}],
                       "health": {"path": "/h", "interval": "1s"}, "retries": 2}],
        "routes": [{"path_prefix": "/api/", "upstream": "u", "limits": [{"key": ["ip"], "rate": "5/s"}],
                    "match_headers": [{"name": "X-V", "exact": "2"}], "max_body_size": "1MiB"}],
        "ratelimit": {"store": "redis", "redis": {"url": "redis://127.0.0.1:6379/0", "timeout": "20ms"}},
        "access_log": {"path": "stdout", "buffer": 4096},
    })
    document = gateway.full_config(gateway.config)
    assert _decodes(document)
    assert list(VALIDATOR.iter_errors(document)) == []


@pytest.mark.parametrize("document,where", [
    ({"listners": []}, []),                                                    # a misspelt table
    ({"server": {"workers": 2, "drain_timeot": "5s"}}, ["server"]),           # an unknown key
    ({"routes": [{"upstream": "u", "upstrem": "u"}]}, ["routes", 0]),
    ({"upstreams": [{"name": "u", "servers": [{"address": "a:1", "wieght": 2}]}]}, ["upstreams", 0, "servers", 0]),
    ({"http": {"header_timeout": "10 parsecs"}}, ["http", "header_timeout"]),  # not a duration
    ({"http": {"max_body_size": "big"}}, ["http", "max_body_size"]),           # not a size
    ({"http": {"max_body_size": 1.5}}, ["http", "max_body_size"]),
    ({"upstreams": [{"name": "u", "servers": [], "balance": "fastest"}]}, ["upstreams", 0, "balance"]),
    ({"listeners": [{"name": "no address"}]}, ["listeners", 0]),               # a required key missing
    ({"server": {"workers": "many"}}, ["server", "workers"]),
    ({"admin": {"metrics": "yes"}}, ["admin", "metrics"]),
])
def test_what_the_loader_refuses_the_schema_refuses(document, where):
    assert not _decodes(document)
    errors = list(VALIDATOR.iter_errors(document))
    assert errors, "the schema accepts a config the loader refuses"
    assert [list(e.absolute_path) for e in errors] == [where]
