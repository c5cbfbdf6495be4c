"""The process model: a master that owns the sockets and supervises worker processes."""
