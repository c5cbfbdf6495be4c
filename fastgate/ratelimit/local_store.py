"""Checks against the shared-memory table: exact across the worker processes of this machine."""

import time

from fastgate.ratelimit.decision import ALLOWED_WITHOUT_HEADERS, Decision
from fastgate.ratelimit.headers import HeaderWriter
from fastgate.ratelimit.limitset import LimitSet
from fastgate.ratelimit.shared_table import SharedTable


class LocalStore:
    def __init__(self, table: SharedTable, writer: HeaderWriter) -> None:
        self._table = table
        self._writer = writer

    def decide(self, limits: LimitSet, keys: list[bytes]) -> Decision:
        """Check and, if every applied limit admits it, count one request; all under the table lock.

        ``keys[i]`` is limit i's key, or b"" when limit i does not apply. If the
        lock cannot be had (a live process keeps it, see shared_table.py) the
        request is admitted without headers.
        """
        table = self._table
        if not table.acquire():
            return ALLOWED_WITHOUT_HEADERS
        try:
            now = time.monotonic_ns() // 1000
            checked = []
            allowed = True
            for i, key in enumerate(keys):
                if key:
                    slot, state = table.lookup(key, now)
                    verdict = limits.functions[i](limits.params[i], state, now)
                    checked.append((i, slot, verdict))
                    allowed = allowed and verdict.allowed
            if allowed:
                for _, slot, verdict in checked:
                    table.store(slot, verdict.state, verdict.expires_us)
        finally:
            table.release()
        if allowed:
            shown = [(i, v.remaining - 1, v.reset_after_us, 0) for i, _, v in checked]
        else:
            shown = [(i, v.remaining, v.reset_us, v.retry_us) for i, _, v in checked]
        return self._writer.decide(limits.headers, shown, allowed)
