"""The proxy core: what a request becomes upstream, and what comes back to the client."""
