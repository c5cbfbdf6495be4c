"""max_connections and max_pending_requests of one upstream in one worker.

Theory of operation
-------------------
``open`` counts this worker's connections to the group's servers: connects
in progress and established connections, idle or busy. A connection takes
its slot when its connect starts (ServerPool.connect) and gives it back
when it closes, or when the connect fails without making one.

A request that needs a new connection while ``open`` is at
``max_connections`` waits in ``waiting`` (first come, first served), at
most ``max_pending`` of them; past that it gets 503 at once. Before it
waits, one idle connection of the group (the oldest of any server) is
closed, so idle connections never hold the slots requests wait for. A
waiting request is served by whichever comes first:

- a connection to its own server is released after a clean exchange: it
  takes it over (``take_connection(conn)``); a connection released to a
  server nobody waits for is closed instead of pooled, freeing its slot;
- a slot frees: the first waiter gets it (``connection_slot_free()``) and
  connects.

The waiter bounds its own wait (its connect timeout) and calls ``cancel``
when it gives up. Each worker keeps its own count, as it keeps its own
pools: the limit is per worker, like nginx's ``max_conns`` per worker
process, so a gateway opens at most workers x max_connections.
"""

from collections import deque


class ConnectionLimit:
    __slots__ = ("max_connections", "max_pending", "open", "waiting")

    def __init__(self, max_connections: int, max_pending: int) -> None:
        self.max_connections = max_connections
        """0: no limit."""
        self.max_pending = max_pending
        self.open = 0
        self.waiting: deque = deque()
        """Exchanges waiting for a connection; each has ``pool``, ``take_connection`` and
        ``connection_slot_free``."""

    def full(self) -> bool:
        return bool(self.max_connections) and self.open >= self.max_connections

    def opened(self) -> None:
        self.open += 1

    def closed(self) -> None:
        """A connection (or a connect) ended: its slot goes to the first waiter, if any."""
        self.open -= 1
        if self.waiting and self.open < self.max_connections:
            self.waiting.popleft().connection_slot_free()

    def wait(self, exchange, pools) -> bool:
        """Queue ``exchange`` for a connection; False when max_pending are waiting already."""
        if len(self.waiting) >= self.max_pending:
            return False
        self.waiting.append(exchange)
        idle = [p for p in pools if p.idle]
        if idle:  # its slot goes to the first waiter once it is closed
            idle[0].idle.pop(0).close()
        return True

    def cancel(self, exchange) -> None:
        try:
            self.waiting.remove(exchange)
        except ValueError:
            pass

    def hand_over(self, pool, conn) -> None:
        """Requests wait: ``conn``, just released clean to ``pool``, goes to the first that waits for
        ``pool``'s server, or is closed so that its slot goes to the first waiter."""
        exchange = self.next_waiter(pool)
        if exchange is not None:
            exchange.take_connection(conn)
        else:
            conn.close()

    def next_waiter(self, pool):
        """The first exchange waiting for a connection to ``pool``'s server, taken out of the queue;
        None when none waits for it. (An HTTP/2 server's waiters are served by the streams of a
        connection that has room: upstream/h2_pool.py.)"""
        for exchange in self.waiting:
            if exchange.pool is pool:
                self.waiting.remove(exchange)
                return exchange
        return None
