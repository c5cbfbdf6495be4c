"""DNS service discovery: one helper process per gateway resolves upstreams' names and publishes their servers."""
