"""Configuration: the TOML schema (schema.py), units, loading and checks (load.py), errors."""
