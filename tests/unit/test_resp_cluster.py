"""runtime/resp_cluster.py's pure parts: key slots (values the cluster spec gives) and the slot map read
from a CLUSTER SLOTS reply (the real-cluster tests are tests/integration/test_ratelimit_cluster_client.py)."""

from fastgate.runtime.resp import parse_reply
from fastgate.runtime.resp_cluster import _slot_map, key_slot


def test_key_slot_is_crc16_of_the_hash_tag():
    assert key_slot(b"123456789") == 0x31C3  # CRC16-XMODEM's check value (the cluster spec's example)
    assert key_slot(b"{user1000}.following") == key_slot(b"{user1000}.followers") == key_slot(b"user1000")
    assert key_slot(b"foo{}{bar}") != key_slot(b"bar")  # an empty tag: the whole key
    assert key_slot(b"foo{{bar}}zap") == key_slot(b"{bar")
    assert key_slot(b"foo{bar}{zap}") == key_slot(b"bar")


def node(host: bytes, port: int) -> bytes:
    return b"*3\r\n$%d\r\n%b\r\n:%d\r\n$2\r\nid\r\n" % (len(host), host, port)


def test_the_map_takes_the_asked_host_for_an_empty_one_and_no_node_for_an_unknown_one():
    reply, _ = parse_reply(b"*3\r\n"
                           b"*4\r\n:0\r\n:99\r\n" + node(b"10.0.0.1", 7000) + node(b"10.0.0.2", 7001) +
                           b"*3\r\n:100\r\n:199\r\n" + node(b"", 7002) +
                           b"*3\r\n:200\r\n:16383\r\n" + node(b"?", 7003), 0)
    slots = _slot_map(reply, "10.0.0.9:7009")
    assert len(slots) == 16384
    assert slots[0] == slots[99] == "10.0.0.1:7000"  # the primary, not its replica
    assert slots[100] == slots[199] == "10.0.0.9:7002"
    assert slots[200] is slots[16383] is None
