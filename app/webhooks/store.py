"""Webhook bookkeeping in Redis, shared by every web process: delivery ids already handled, and the
signing secret once fetched. (The delivered prediction states live in app.jobs.predictions.)"""
from __future__ import annotations

from typing import Callable

from redis import Redis

DELIVERY_KEY = "tessera:webhook-delivery:{}"
SECRET_KEY = "tessera:replicate-webhook-secret"
# Far longer than the timestamp tolerance: a repeat after that is refused as stale anyway.
DELIVERY_TTL = 3600
SECRET_TTL = 3600  # a rotated secret is picked up within the hour; polling covers the gap


def claim_delivery(redis: Redis, webhook_id: str) -> bool:
    """True the first time a delivery id is seen; a repeated delivery gets False."""
    return bool(redis.set(DELIVERY_KEY.format(webhook_id), 1, nx=True, ex=DELIVERY_TTL))


def release_delivery(redis: Redis, webhook_id: str) -> None:
    """Forget a delivery that could not be handled, so that Replicate's retry of it is handled."""
    redis.delete(DELIVERY_KEY.format(webhook_id))


def cached_secret(redis: Redis, fetch: Callable[[], str]) -> str:
    """The signing secret, asked of Replicate once and then shared by every process through Redis."""
    cached = redis.get(SECRET_KEY)
    if cached:
        return cached.decode()
    secret = fetch()
    redis.set(SECRET_KEY, secret, ex=SECRET_TTL)
    return secret
