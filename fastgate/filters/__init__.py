"""Filters: the steps of a route's request path, on the contract of filters/base.py."""
