"""HTTP/1.1 on the wire, sans-IO: message heads, chunked framing, status lines."""
