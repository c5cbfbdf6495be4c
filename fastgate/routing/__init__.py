"""Routing: which route takes a request, and how the route rewrites it."""
