"""Failed logins counted in Redis, in a fixed window per client address and per username.

Only failures count and a success clears the counters, so the check wraps the password test itself;
that is a handful of Redis commands here rather than Flask-Limiter's per-view decorators. Every
process (web servers on several machines too) shares the counts through Redis.
"""
from __future__ import annotations

import logging

from redis import Redis
from redis.exceptions import RedisError

log = logging.getLogger(__name__)

KEY_PREFIX = "tessera:login-failures"


class LoginLimiter:
    def __init__(self, redis: Redis, *, per_address: int, per_username: int, window_seconds: int) -> None:
        self.redis = redis
        self.per_address = per_address
        self.per_username = per_username
        self.window = window_seconds

    def _counters(self, address: str, username: str) -> list[tuple[str, int]]:
        # "Ada" and "ada " must not be separate budgets for guessing one account.
        name = username.strip().lower()[:200]
        return [(f"{KEY_PREFIX}:address:{address}", self.per_address),
                (f"{KEY_PREFIX}:username:{name}", self.per_username)]

    def seconds_blocked(self, address: str, username: str) -> int:
        """0 when a login may be tried, else the seconds until the fullest window ends."""
        counters = self._counters(address, username)
        try:
            with self.redis.pipeline(transaction=False) as pipe:
                for key, _limit in counters:
                    pipe.get(key)
                    pipe.ttl(key)
                answers = pipe.execute()
        except RedisError:
            # Without Redis no job runs either; logins stay possible rather than locking everyone out.
            log.warning("Login rate limiting is off: Redis cannot be reached", exc_info=True)
            return 0
        waits = [max(int(ttl), 1) for (_key, limit), count, ttl in zip(counters, answers[::2], answers[1::2])
                 if count is not None and int(count) >= limit]
        return max(waits, default=0)

    def record_failure(self, address: str, username: str) -> None:
        try:
            with self.redis.pipeline(transaction=True) as pipe:
                for key, _limit in self._counters(address, username):
                    pipe.set(key, 0, ex=self.window, nx=True)  # the first failure opens the window
                    pipe.incr(key)
                pipe.execute()
        except RedisError:
            log.warning("Could not count a failed login: Redis cannot be reached", exc_info=True)

    def clear(self, address: str, username: str) -> None:
        try:
            self.redis.delete(*(key for key, _limit in self._counters(address, username)))
        except RedisError:
            log.warning("Could not reset the failed-login counts: Redis cannot be reached", exc_info=True)
