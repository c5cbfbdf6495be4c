"""bench/h2load.py reads h2load's summary and request log into the figures wrk's runs give.

The samples in h2load_output/ are h2load 1.52's own output, captured against the
bench's proxies (fastgate over TLS and h2c, nginx without HTTP/2 over TLS), a
port nothing listens on, and an nginx that ends each connection after 1000
requests (its default keepalive_requests), which cuts streams in flight.
"""

import shutil
from pathlib import Path

import pytest

from bench.h2load import parse, run_h2load
from bench.procs import free_port

SAMPLES = Path(__file__).with_name("h2load_output")


def sample(name: str) -> str:
    return (SAMPLES / name).read_text()


def test_a_timed_h2c_run_gives_requests_rate_and_no_errors():
    result = parse(sample("h2c_duration.txt"), "")
    assert (result.requests, result.duration_s, result.rps) == (3259, 1.0, 3259.0)
    assert result.errors == 0


def test_latency_percentiles_come_from_the_request_log():
    result = parse(sample("h2_tls_n200.txt"), sample("h2_tls_n200.tsv"))
    assert result.requests == 200
    assert result.duration_s == pytest.approx(0.12442)  # "finished in 124.42ms"
    assert result.rps == pytest.approx(200 / 0.12442)
    # nearest rank over the 200 logged microsecond durations: the 100th and the 198th
    assert (result.p50_ms, result.p99_ms) == (2.525, 5.723)


def test_4xx_answers_are_responses_counted_as_non_2xx():
    result = parse(sample("h2_tls_404.txt"), "")
    assert (result.requests, result.non_2xx) == (40, 40)
    assert sum(result.socket_errors.values()) == 0
    assert result.errors == 40


def test_streams_cut_with_their_connection_are_errors():
    result = parse(sample("goaway_duration.txt"), "")
    assert result.requests == 4000
    assert result.socket_errors == {"connection": 7, "timeout": 0, "incomplete": 0}
    assert result.non_2xx == 0


def test_requests_a_refused_connection_never_sent_are_errors():
    result = parse(sample("refused_count.txt"), "")
    assert result.requests == 0
    assert result.socket_errors["connection"] == 10


def test_a_server_that_picks_http11_by_alpn_is_refused():
    with pytest.raises(RuntimeError, match="h2load spoke http/1.1, not HTTP/2"):
        parse(sample("tls_http11_alpn.txt"), "")


def test_output_without_the_summary_is_refused():
    cut = sample("h2c_duration.txt").split("\nfinished in")[0]
    with pytest.raises(RuntimeError, match="no h2load summary"):
        parse(cut, "")


def test_rows_of_failed_streams_are_left_out_of_the_latencies():
    log = "1796339696714135\t-1\t900000\n1796339696714136\t200\t1000\n1796339696714137\t200\t3000\n"
    result = parse(sample("h2c_duration.txt"), log)
    assert (result.p50_ms, result.p99_ms) == (1.0, 3.0)


@pytest.mark.skipif(shutil.which("h2load") is None, reason="h2load (Debian nghttp2-client) is not installed")
def test_a_timed_run_without_any_response_is_an_error():
    # In a timed run h2load counts nothing when no connection is made (see refused_duration.txt).
    with pytest.raises(RuntimeError, match="h2load got no response in 1 s"):
        run_h2load(f"http://127.0.0.1:{free_port()}/small", 1, 2, 2, 1, None)
