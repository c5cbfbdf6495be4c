"""Helpers for the integration tests: real upstream servers, the gateway process, clients."""
