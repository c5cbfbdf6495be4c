"""The admin listener: health, readiness, metrics, status and the running config."""
