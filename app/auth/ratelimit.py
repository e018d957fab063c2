"""Slowing down password guessing without locking the account's owner out.

Failed logins are counted in Redis (shared by every web process) for three keys: the client address
together with the username, the address alone, and the username alone. Each key allows a number of
failures, then asks for a wait that doubles with every further failure (2 s, 4 s, 8 s … up to
`max_delay`); attempts made during a wait are refused without checking the password, so they do not
count. Counts fade `window_seconds` after the last failure.

The username-wide key is what lets a stranger lock an owner out, so it does not apply to a browser
that has logged in to that account before (it carries a signed device cookie, see app.auth.devices)
or to an address the account logged in from before. The owner's own address+username key counts
only the owner's own mistakes. (OWASP's Authentication Cheat Sheet recommends exactly this mix:
per-account throttling with known-device exemptions rather than hard lock-outs.)
"""
from __future__ import annotations

import ipaddress
import logging
import math
from dataclasses import dataclass

from redis import Redis
from redis.exceptions import RedisError

log = logging.getLogger(__name__)

KEY_PREFIX = "tessera:login-failures"
KNOWN_PREFIX = "tessera:login-known"  # address+username pairs that logged in before
KNOWN_ADDRESS_SECONDS = 90 * 24 * 3600


def address_key(address: str) -> str:
    """The address as counted: an IPv6 address by its /64 network, which one subscriber usually holds
    whole (so hopping through it does not reset the count)."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address[:100]
    if ip.version == 6:
        if ip.ipv4_mapped:
            return str(ip.ipv4_mapped)
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)


def username_key(username: str) -> str:
    # "Ada" and "ada " must not be separate budgets for guessing one account.
    return username.strip().lower()[:200]


@dataclass(frozen=True)
class _Counter:
    kind: str
    ident: str
    allowed: int

    @property
    def count_key(self) -> str:
        return f"{KEY_PREFIX}:count:{self.kind}:{self.ident}"

    @property
    def wait_key(self) -> str:
        return f"{KEY_PREFIX}:wait:{self.kind}:{self.ident}"


class LoginLimiter:
    def __init__(self, redis: Redis, *, per_address: int, per_username: int, window_seconds: int,
                 per_address_and_username: int = 5, first_delay: float = 2.0, max_delay: float = 900.0) -> None:
        self.redis = redis
        self.per_address = per_address
        self.per_username = per_username
        self.per_pair = min(per_address_and_username, per_address)
        self.window = window_seconds
        self.first_delay = first_delay
        self.max_delay = max_delay

    def _counters(self, address: str, username: str, *, known: bool) -> list[_Counter]:
        address, name = address_key(address), username_key(username)
        counters = [_Counter("pair", f"{address}|{name}", self.per_pair), _Counter("address", address, self.per_address)]
        if not known:
            counters.append(_Counter("username", name, self.per_username))
        return counters

    def is_known_address(self, address: str, username: str) -> bool:
        try:
            return bool(self.redis.exists(self._known_key(address, username)))
        except RedisError:
            return False

    def _known_key(self, address: str, username: str) -> str:
        return f"{KNOWN_PREFIX}:{username_key(username)}|{address_key(address)}"

    def seconds_blocked(self, address: str, username: str, *, known_device: bool = False) -> int:
        """0 when a login may be tried now, else the whole seconds to wait. `known_device`: the browser
        proved (device cookie) that it logged in to this account before."""
        known = known_device or self.is_known_address(address, username)
        counters = self._counters(address, username, known=known)
        try:
            with self.redis.pipeline(transaction=False) as pipe:
                for counter in counters:
                    pipe.pttl(counter.wait_key)
                waits = pipe.execute()
        except RedisError:
            # Without Redis no job runs either; logins stay possible rather than locking everyone out.
            log.warning("Login rate limiting is off: Redis cannot be reached", exc_info=True)
            return 0
        return max((math.ceil(ms / 1000) for ms in waits if ms and ms > 0), default=0)

    def record_failure(self, address: str, username: str, *, known_device: bool = False) -> int:
        """Count a wrong password; returns the seconds the next try from here must wait (0: none)."""
        known = known_device or self.is_known_address(address, username)
        counters = self._counters(address, username, known=known)
        # A known browser's mistakes still count against the username for everyone else.
        if known:
            counters.append(_Counter("username", username_key(username), self.per_username))
        try:
            with self.redis.pipeline(transaction=True) as pipe:
                for counter in counters:
                    pipe.incr(counter.count_key)
                    pipe.expire(counter.count_key, self.window)
                counts = pipe.execute()[::2]
            waits = {}
            with self.redis.pipeline(transaction=True) as pipe:
                for counter, count in zip(counters, counts):
                    over = int(count) - counter.allowed
                    if over > 0:
                        wait = min(self.max_delay, self.first_delay * 2 ** (over - 1))
                        pipe.set(counter.wait_key, 1, px=int(wait * 1000))
                        waits[counter.kind] = wait
                pipe.execute()
        except RedisError:
            log.warning("Could not count a failed login: Redis cannot be reached", exc_info=True)
            return 0
        applicable = {c.kind for c in self._counters(address, username, known=known)}
        return math.ceil(max((w for kind, w in waits.items() if kind in applicable), default=0))

    def record_success(self, address: str, username: str) -> None:
        """The right password: this address+username starts afresh and the address is known for the
        account. The address-wide and username-wide counts stay: logging in to one's own account must
        not buy more guesses at others."""
        pair = _Counter("pair", f"{address_key(address)}|{username_key(username)}", self.per_pair)
        try:
            with self.redis.pipeline(transaction=True) as pipe:
                pipe.delete(pair.count_key, pair.wait_key)
                pipe.set(self._known_key(address, username), 1, ex=KNOWN_ADDRESS_SECONDS)
                pipe.execute()
        except RedisError:
            log.warning("Could not reset the failed-login counts: Redis cannot be reached", exc_info=True)
