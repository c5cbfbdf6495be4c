"""The request target: strict syntax, and the one normalised path that is routed and forwarded."""

import random

import pytest

from fastgate.wire.errors import HeadError
from fastgate.wire.target import PathRules, normalize_path, split_target

RULES = PathRules()


@pytest.mark.parametrize("target, path, query", [
    (b"/", b"/", b""),
    (b"/a/b?x=1&y=%zz", b"/a/b", b"?x=1&y=%zz"),          # the query is relayed as it came
    (b"/%61dmin", b"/admin", b""),                         # an escaped unreserved character is decoded
    (b"/%7euser/%2D%2e%5f", b"/~user/-._", b""),
    (b"/a%3ab%c3%a9", b"/a%3Ab%C3%A9", b""),               # other escapes stay, hex in upper case
    (b"//admin", b"/admin", b""),
    (b"/a///b//", b"/a/b/", b""),
    (b"/a/./b", b"/a/b", b""),
    (b"/a/../b", b"/b", b""),
    (b"/x/../admin", b"/admin", b""),
    (b"/a/%2e%2e/b", b"/b", b""),
    (b"/a/%2E./b", b"/b", b""),
    (b"/a/b/..", b"/a/", b""),
    (b"/a/b/.", b"/a/b/", b""),
    (b"/a/.hidden/..x", b"/a/.hidden/..x", b""),           # dots inside a segment are no dot segments
    (b"/a//../b", b"/b", b""),                             # slashes merged first: "/a/../b"
    (b"/@:!$&'()*+,;=", b"/@:!$&'()*+,;=", b""),          # every pchar
])
def test_normal_form(target, path, query):
    got_path, got_query, changed = split_target(target, RULES)
    assert (got_path, got_query) == (path, query)
    assert changed == (path != target.split(b"?")[0])


@pytest.mark.parametrize("target", [
    b"/a#frag", b"/a?b#c", b"/a\\b", b"/a b", b"/a\x00", b"/a\x7f", b"/a\x80", b"/a\"b", b"/a<b>", b"/a{b}",
    b"/a|b", b"/a^b", b"/a`b", b"/a[0]", b"/%", b"/%4", b"/%zz", b"/%4g", b"/a%2Fb", b"/a%2fb", b"/a%5Cb",
    b"/a%00", b"/a%0a", b"/a%0D", b"/a%1f", b"/a%7F", b"/..", b"/../a", b"/a/../../b", b"/%2e%2e/a", b"a/b", b"",
])
def test_refused(target):
    with pytest.raises(HeadError) as caught:
        split_target(target, RULES)
    assert caught.value.status == 400


def test_rules_can_keep_encoded_slashes_and_double_slashes():
    rules = PathRules(merge_slashes=False, keep_encoded_slashes=True)
    assert split_target(b"/a%2fb//c", rules) == (b"/a%2Fb//c", b"", True)
    assert split_target(b"/a//b", rules) == (b"/a//b", b"", False)
    assert split_target(b"/a//../b", rules) == (b"/a/b", b"", True)  # ".." takes the empty segment


def test_normal_form_is_a_fixed_point_on_random_paths():
    """Normalising twice changes nothing, and the normal form never holds "//", a dot segment or an
    escaped unreserved character (so no two spellings of one path reach the router)."""
    rng = random.Random(20261203)
    pieces = [b"a", b"b", b"/", b"//", b".", b"..", b"%2e", b"%2E", b"%41", b"%3a", b"%C3%A9", b"~", b"-", b"_"]
    checked = 0
    for _ in range(5000):
        path = b"/" + b"".join(rng.choice(pieces) for _ in range(rng.randint(0, 10)))
        try:
            once = normalize_path(path, RULES)
        except HeadError:
            continue
        checked += 1
        assert normalize_path(once, RULES) == once, path
        assert b"//" not in once
        assert all(segment not in (b".", b"..") for segment in once.split(b"/")), (path, once)
        assert b"%41" not in once and b"%2E" not in once.upper()
    assert checked > 1000
