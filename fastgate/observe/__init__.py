"""What the gateway shows of itself: logs (and, later, metrics and traces)."""
