"""The discovery helper's role as a helper process of the master (master/helper.py).

It runs when an upstream has a ``discovery`` table. On a promoted reload the
helper of the old config stops (the new config has a table of its own to
write); once it is gone, the servers it found for discovery tables both
configs share are copied into the new table (load_config copied them
already; this adds what it found while the new workers were starting), and
a helper for the new config starts.
"""

from fastgate.config.load import LoadedConfig


class ServerDiscovery:
    name = "discovery helper"

    def needed(self, loaded: LoadedConfig) -> bool:
        return any(group.discovery is not None for group in loaded.config.upstreams)

    def same_work(self, running: LoadedConfig, wanted: LoadedConfig) -> bool:
        return False

    def handover(self, previous: LoadedConfig, loaded: LoadedConfig) -> None:
        before = {c.name: c.discovery for c in previous.config.upstreams}
        loaded.servers.carry_discovered(previous.servers, [
            c.name for c in loaded.config.upstreams if c.discovery is not None and before.get(c.name) == c.discovery])

    def run(self, loaded: LoadedConfig, master_pid: int) -> int:
        from fastgate.discovery.follower import run_discovery

        return run_discovery(loaded, master_pid)
