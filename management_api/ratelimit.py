"""Fixed-window rate limits in Redis for the unauthenticated endpoints (login, register).

Each attempt increments a counter per (limit, key) whose window starts with the first attempt;
over the limit the request answers 429 with ``Retry-After`` (seconds until the window ends). Keys
are hashed, so Redis never holds an email address or an IP in clear.

The client IP is the ASGI peer address. Behind a proxy, run uvicorn with ``--proxy-headers`` and
``--forwarded-allow-ips`` set to the proxy, so the peer address is the real client's.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from redis.asyncio import Redis

from chatmill.errors import RateLimited


@dataclass(frozen=True)
class Limit:
    name: str
    attempts: int
    window_seconds: int
    message: str


LOGIN_PER_EMAIL = Limit("login:email", 10, 60, "too many login attempts for this account; try again later")
LOGIN_PER_IP = Limit("login:ip", 30, 60, "too many login attempts from this address; try again later")
REGISTER_PER_EMAIL = Limit("register:email", 5, 3600, "too many sign-ups for this email; try again later")
REGISTER_PER_IP = Limit("register:ip", 10, 3600, "too many sign-ups from this address; try again later")
REFRESH_PER_IP = Limit("refresh:ip", 60, 60, "too many token refreshes from this address; try again later")


# Atomic count-and-expire (Redis 6 compatible: no EXPIRE NX); a key without TTL gets one.
_HIT_SCRIPT = """
local n = redis.call('INCR', KEYS[1])
local ttl = redis.call('TTL', KEYS[1])
if ttl < 0 then
    redis.call('EXPIRE', KEYS[1], ARGV[1])
    ttl = tonumber(ARGV[1])
end
return {n, ttl}
"""


def _key(limit: Limit, subject: str) -> str:
    digest = hashlib.sha256(subject.encode()).hexdigest()[:32]
    return f"ratelimit:{limit.name}:{digest}"


async def hit(redis: Redis, limit: Limit, subject: str) -> None:
    """Count one attempt; raise :class:`RateLimited` once the window's budget is spent."""
    result = await redis.eval(_HIT_SCRIPT, 1, _key(limit, subject), limit.window_seconds)
    count, ttl = int(result[0]), int(result[1])
    if int(count) > limit.attempts:
        retry_after = max(int(ttl), 1)
        raise RateLimited(
            limit.message,
            details={"retry_after_seconds": retry_after},
            headers={"Retry-After": str(retry_after)},
        )
