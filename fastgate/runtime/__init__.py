"""What a worker's code runs on, whatever its layer: the coarse clock and the Redis clients.

Every package may import runtime/; runtime/ imports nothing else of fastgate
(an import-linter contract in pyproject.toml checks it), so it never pulls a
layer into another. What lives here knows no config table, no connection
class and no request: its users build what it needs from their own settings.

- clock.py: cached loop time, the Date header, deadline sweeps (timeouts).
- redis_server.py: where and how to reach Redis (``RedisServer``).
- resp.py: fastgate's own pipelined RESP2 client for one server.
- resp_cluster.py: the same client for a Redis Cluster (slot map, MOVED and ASK).
- redis_client.py: coredis clients, for Sentinel and general use.
"""
