"""Rate limiting: per IP, API key, user or request field; local shared memory or Redis.

See README.md in this directory for the configuration, and limiter.py for
the lifecycle (create_shared in the master, attach in each worker).
"""

from fastgate.ratelimit.config import BreakerSettings, Limit, RateLimitSettings, RedisSettings, validate
from fastgate.ratelimit.decision import Decision
from fastgate.ratelimit.keys import UNPARSEABLE, body_field
from fastgate.ratelimit.limiter import RateLimiter, RouteLimits
from fastgate.ratelimit.stats import RateLimitStats

__all__ = [
    "BreakerSettings", "Decision", "Limit", "RateLimitSettings", "RateLimitStats", "RateLimiter",
    "RedisSettings", "RouteLimits", "UNPARSEABLE", "body_field", "validate",
]
