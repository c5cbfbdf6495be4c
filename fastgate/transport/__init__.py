"""asyncio Protocols that feed bytes to wire/ and write what the proxy returns."""
