"""Per-(chatbot, contact) message rate limit in Redis, with one atomic script.

A sliding one-minute window: each accepted message is a member (its wamid) of a sorted set scored by
time; the script drops members older than the window, counts, and admits the message only while the
count is below the chatbot's ``rate_limit_per_minute``. Counting by wamid makes a redelivered
message count once.

Redis being down must not stop customers from being answered: the limiter then fails open (admits),
counts it in ``chatmill_ratelimit_fail_open_total`` and logs at most once per minute. PostgreSQL's
uniqueness still prevents duplicates.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid

from prometheus_client import CollectorRegistry, Counter
from redis.asyncio import Redis
from redis.exceptions import RedisError

_log = logging.getLogger(__name__)

WINDOW_MS = 60_000
REDIS_TIMEOUT_SECONDS = 0.25
_LOG_INTERVAL_SECONDS = 60.0

# KEYS[1] the window; ARGV: now_ms, window_ms, limit, member. Returns 1 admitted, 0 refused.
_SLIDING_WINDOW = """
local now = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
if redis.call('ZSCORE', KEYS[1], ARGV[4]) then
  return 1
end
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[3]) then
  return 0
end
redis.call('ZADD', KEYS[1], now, ARGV[4])
redis.call('PEXPIRE', KEYS[1], window)
return 1
"""


class RateLimiter:
    def __init__(self, redis: Redis, registry: CollectorRegistry) -> None:
        self._redis = redis
        self._script = redis.register_script(_SLIDING_WINDOW)
        self._fail_open = Counter(
            "chatmill_ratelimit_fail_open_total",
            "Messages admitted without a rate-limit check because Redis was unavailable",
            registry=registry,
        )
        self._last_log = 0.0

    async def admit(self, chatbot_id: uuid.UUID, sender: str, *, limit: int, member: str) -> bool:
        """Whether message ``member`` from ``sender`` (user_id or wa_id) is within the chatbot's limit."""
        key = f"chatmill:rl:{chatbot_id}:{sender}"
        try:
            result = await asyncio.wait_for(
                self._script(keys=[key], args=[int(time.time() * 1000), WINDOW_MS, limit, member]),
                timeout=REDIS_TIMEOUT_SECONDS,
            )
        except (RedisError, OSError, TimeoutError) as exc:
            self._fail_open.inc()
            now = time.monotonic()
            if now - self._last_log >= _LOG_INTERVAL_SECONDS:
                self._last_log = now
                _log.warning("rate limiter failing open: Redis unavailable (%s)", type(exc).__name__)
            return True
        return bool(result)
