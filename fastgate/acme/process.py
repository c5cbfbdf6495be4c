"""The ACME manager's role as a helper process of the master (master/helper.py).

It runs when a listener has ``tls.acme``; a reload that keeps every managed
certificate's settings leaves it running (a reload is what it asks for after
each new certificate, and must not cut the next order short). It asks the
master for a reload through ``request_reload``, a callable the master gives.
"""

from collections.abc import Callable

from fastgate.config.load import LoadedConfig


class AcmeManager:
    name = "ACME manager"

    def __init__(self, request_reload: Callable[[], None]) -> None:
        self.request_reload = request_reload
        """Called in the manager process when a new certificate is stored."""

    def needed(self, loaded: LoadedConfig) -> bool:
        return bool(loaded.acme)

    def same_work(self, running: LoadedConfig, wanted: LoadedConfig) -> bool:
        return running.acme == wanted.acme

    def handover(self, previous: LoadedConfig, loaded: LoadedConfig) -> None:
        """Nothing: the manager's state is in the storage."""

    def run(self, loaded: LoadedConfig, master_pid: int) -> int:
        from fastgate import __version__
        from fastgate.acme.manager import run_manager

        return run_manager(loaded.acme, self.request_reload, f"fastgate/{__version__}")
