"""The health checker's role as a helper process of the master (master/helper.py).

One checker per gateway probes every server of the upstreams with a health
table. A checker that dies is respawned with the same shared table, so no
verdict or count is lost. On a promoted reload the checker of the old config
stops, and once it is gone the verdicts of the servers both configs check
are copied into the new table (load_config copied them already when the new
config was loaded; this second copy adds what changed while the new workers
were starting) and a checker for the new config starts. Old workers that are
still draining keep the old table, which no longer changes.
"""

from fastgate.config.load import LoadedConfig


class HealthChecker:
    """The master's helper that runs the active health checks (health/checker.py)."""

    name = "health checker"

    def needed(self, loaded: LoadedConfig) -> bool:
        return bool(loaded.health.slots)

    def same_work(self, running: LoadedConfig, wanted: LoadedConfig) -> bool:
        return False  # the new config has a table of its own to write

    def handover(self, previous: LoadedConfig, loaded: LoadedConfig) -> None:
        loaded.health.carry_over(previous.health)

    def run(self, loaded: LoadedConfig, master_pid: int) -> int:
        from fastgate.health.checker import run_checker

        return run_checker(loaded, master_pid)
