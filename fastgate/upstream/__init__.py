"""Upstreams: server groups, keep-alive pools and the HTTP/1.1 client side."""
