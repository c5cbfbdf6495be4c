"""The C request counter (observe/_native_counts.c) adds exactly what metrics.py's count_request adds."""

import itertools
from types import SimpleNamespace

import pytest

from fastgate.config.load import load_config
from fastgate.native import speedup
from fastgate.observe.metrics import WorkerMetrics

native = speedup("observe._native_counts")
pytestmark = pytest.mark.skipif(native is None, reason="C speedups not built, or FASTGATE_PURE_PYTHON=1")

CONFIG = ('[[listeners]]\naddress = "127.0.0.1:8080"\n'
          '[[upstreams]]\nname = "users"\nservers = ["127.0.0.1:9000", "127.0.0.1:9001"]\n'
          '[[upstreams]]\nname = "orders"\nservers = ["127.0.0.1:9002"]\n'
          '[[routes]]\nname = "u"\npath = "/users"\nupstream = "users"\n'
          '[[routes]]\nname = "o"\npath = "/orders"\nupstream = "orders"\n')


class Pool:
    """What the counts read of a pool (upstream/pool.py): its group and label; hashed by identity."""

    def __init__(self, group, label: str) -> None:
        self.group = group
        self.label = label


class Conn:
    """What the counts read of a connection, in __slots__ as transport/h1_server.py keeps it (the C code
    reads such slots at their offsets; other objects, like SimpleNamespace, through getattr)."""

    __slots__ = ("route", "head", "pool", "status", "limit_outcome", "upstream_label", "upstream_s", "bytes_in",
                 "bytes_out")

    def __init__(self, **attributes) -> None:
        for name, value in attributes.items():
            setattr(self, name, value)


def metrics_pair(tmp_path):
    """Two WorkerMetrics of one config sharing its pools: the C counter's, and the Python one's."""
    path = tmp_path / "gate.conf"
    path.write_text(CONFIG)
    loaded = load_config(str(path))
    for group in loaded.upstreams.values():
        group.pools = tuple(Pool(group, str(spec)) for spec in group.servers)
    with_c, with_python = WorkerMetrics(loaded), WorkerMetrics(loaded)
    with_python.values = [0] * len(with_python.layout)  # as without the C speedups
    assert with_c.request_done.__self__.__class__ is native.RequestCounter
    return with_c, with_python, loaded


def connections(loaded):
    """Every kind of finished request: matched or not, head or not, each method class and status class,
    with or without a limit outcome, forwarded or answered locally."""
    routes = [None, SimpleNamespace(index=0), SimpleNamespace(index=1)]
    heads = [None] + [SimpleNamespace(method=m) for m in (b"GET", b"HEAD", b"POST", b"DELETE", b"OPTIONS", b"BREW")]
    pools = [None] + [pool for group in loaded.upstreams.values() for pool in group.pools]
    statuses = [101, 200, 304, 404, 429, 499, 502, 999, 42]
    outcomes = ["", "allowed", "limited", "unavailable"]
    durations = [0.0, 0.0004, 0.001, 0.0011, 0.3, 99.0]
    for i, (route, head, pool, status, outcome) in enumerate(
            itertools.product(routes, heads, pools, statuses, outcomes)):
        kind = SimpleNamespace if i % 7 == 0 else Conn  # both ways of reading, and switching between them
        yield kind(
            route=route, head=head, pool=pool, status=status if pool else 0, limit_outcome=outcome,
            upstream_label="" if pool is None or i % 5 == 0 else pool.label, upstream_s=durations[i % 6],
            bytes_in=i * 7, bytes_out=i * 1013 + 2**40), status, durations[(i + 1) % 6]


def test_the_c_counter_adds_what_count_request_adds(tmp_path):
    with_c, with_python, loaded = metrics_pair(tmp_path)
    requests = 0
    for conn, status, total_s in connections(loaded):
        with_c.request_done(conn, status, total_s)
        with_python.count_request(conn, status, total_s)
        requests += 1
    assert requests == 3 * 7 * 4 * 9 * 4
    assert list(with_c.values) == with_python.values
    assert sum(with_c.values[:5]) > 0  # route 0's GET counts moved


def test_a_connection_of_wrong_types_raises_and_the_worker_goes_on(tmp_path):
    with_c, _, loaded = metrics_pair(tmp_path)
    conn, status, total_s = next(connections(loaded))
    bad = SimpleNamespace(**{**vars(conn), "limit_outcome": "maybe"})
    with pytest.raises(KeyError):
        with_c.request_done(bad, status, total_s)
    stranger = Pool(next(iter(loaded.upstreams.values())), "127.0.0.1:9999")  # not in the layout
    with pytest.raises(KeyError):
        with_c.request_done(SimpleNamespace(**{**vars(conn), "pool": stranger, "upstream_label": "x", "status": 200}),
                            status, total_s)
    with pytest.raises(TypeError):
        with_c.request_done(conn, status, "slow")
    with pytest.raises(AttributeError):
        with_c.request_done(object(), status, total_s)
    with pytest.raises(TypeError):
        with_c.request_done(conn, status)
    before = list(with_c.values)
    with_c.request_done(conn, status, total_s)
    assert sum(with_c.values) > sum(before)
