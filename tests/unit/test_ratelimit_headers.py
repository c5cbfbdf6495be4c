"""Rate-limit response headers, byte for byte, in each style."""

from fastgate.ratelimit.headers import HeaderWriter

S = 1_000_000
NAMES, QUOTAS, WINDOWS = ["otp-phone", "otp-ip"], [5, 20], [600, 600]


def decide(style, shown, allowed, on_allowed=True):
    writer = HeaderWriter(style, on_allowed)
    return writer.decide(writer.prepare(NAMES, QUOTAS, WINDOWS), shown, allowed)


def test_draft_on_allowed_lists_every_applied_limit_with_seconds_rounded_up():
    d = decide("draft", [(0, 4, 120 * S, 0), (1, 19, 30 * S + 1, 0)], True)
    assert (d.allowed, d.status, d.retry_after_s) == (True, 200, 0.0)
    assert d.headers == (b'\r\nRateLimit-Policy: "otp-phone";q=5;w=600, "otp-ip";q=20;w=600'
                         b'\r\nRateLimit: "otp-phone";r=4;t=120, "otp-ip";r=19;t=31')


def test_draft_on_limited_adds_retry_after_of_the_longest_wait():
    d = decide("draft", [(0, 0, 600 * S, 119_200_000), (1, 3, 90 * S, 0)], False)
    assert (d.allowed, d.status) == (False, 429)
    assert d.retry_after_s == 119.2
    assert d.headers == (b'\r\nRateLimit-Policy: "otp-phone";q=5;w=600, "otp-ip";q=20;w=600'
                         b'\r\nRateLimit: "otp-phone";r=0;t=600, "otp-ip";r=3;t=90\r\nRetry-After: 120')


def test_draft_omits_limits_that_did_not_apply_from_ratelimit_only():
    d = decide("draft", [(1, 7, 10 * S, 0)], True)
    assert d.headers == (b'\r\nRateLimit-Policy: "otp-phone";q=5;w=600, "otp-ip";q=20;w=600'
                         b'\r\nRateLimit: "otp-ip";r=7;t=10')


def test_legacy_reports_the_tightest_limit_when_allowed_and_the_denying_one_when_limited():
    d = decide("legacy", [(0, 4, 120 * S, 0), (1, 2, 30 * S, 0)], True)
    assert d.headers == b"\r\nRateLimit-Limit: 20\r\nRateLimit-Remaining: 2\r\nRateLimit-Reset: 30"
    d = decide("legacy", [(0, 0, 600 * S, 120 * S), (1, 2, 30 * S, 0)], False)
    assert d.headers == (b"\r\nRateLimit-Limit: 5\r\nRateLimit-Remaining: 0\r\nRateLimit-Reset: 600"
                         b"\r\nRetry-After: 120")


def test_none_style_and_headers_on_allowed_off():
    assert decide("none", [(0, 4, 120 * S, 0)], True).headers == b""
    assert decide("none", [(0, 0, 120 * S, 1)], False).headers == b"\r\nRetry-After: 1"
    d = decide("draft", [(0, 4, 120 * S, 0)], True, on_allowed=False)
    assert (d.allowed, d.headers) == (True, b"")
    assert decide("draft", [(0, 0, 9 * S, 9 * S)], False, on_allowed=False).headers.endswith(b"Retry-After: 9")
