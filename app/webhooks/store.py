"""Webhook bookkeeping in Redis, shared by every web process: delivery ids already handled, and the
signing secret once fetched. (The delivered prediction states live in app.jobs.predictions.)"""
from __future__ import annotations

import logging
import os
from typing import Callable

from redis import Redis

log = logging.getLogger(__name__)

DELIVERY_KEY = "tessera:webhook-delivery:{}"
SECRET_KEY = "tessera:replicate-webhook-secret"
# Far longer than the timestamp tolerance: a repeat after that is refused as stale anyway.
DELIVERY_TTL = 3600
SECRET_TTL = 3600  # a rotated secret is picked up within the hour; polling covers the gap
# After a failed fetch, deliveries answer 503 without asking Replicate for this long (a negative cache).
SECRET_FAILED_KEY = "tessera:replicate-webhook-secret:failed"
SECRET_RETRY_SECONDS = 60
# Held by the one process that is asking Replicate; longer than the fetch's timeout with its retry.
SECRET_FETCH_LOCK = "tessera:replicate-webhook-secret:fetching"
SECRET_FETCH_LOCK_SECONDS = 45


def claim_delivery(redis: Redis, webhook_id: str) -> bool:
    """True the first time a delivery id is seen; a repeated delivery gets False."""
    return bool(redis.set(DELIVERY_KEY.format(webhook_id), 1, nx=True, ex=DELIVERY_TTL))


def release_delivery(redis: Redis, webhook_id: str) -> None:
    """Forget a delivery that could not be handled, so that Replicate's retry of it is handled."""
    redis.delete(DELIVERY_KEY.format(webhook_id))


class SecretUnavailable(Exception):
    """The signing secret is not known and is not fetched now (a recent fetch failed, or another
    process is fetching it); the delivery should be answered 503 so that Replicate retries it."""


def cached_secret(redis: Redis, fetch: Callable[[], str]) -> str:
    """The signing secret, asked of Replicate once and then shared by every process through Redis.

    Anyone can POST to the webhook URL, so a delivery must never cost a call to Replicate by itself:
    at most one process fetches at a time (a Redis lock), and a failed fetch is remembered for
    SECRET_RETRY_SECONDS, during which deliveries get SecretUnavailable without asking Replicate again.
    Raises SecretUnavailable, or RedisError when Redis cannot be reached.
    """
    cached = redis.get(SECRET_KEY)
    if cached:
        return cached.decode()
    if redis.exists(SECRET_FAILED_KEY):
        raise SecretUnavailable("Replicate did not give the webhook secret a moment ago; it is asked again "
                                f"within {SECRET_RETRY_SECONDS} s.")
    if not redis.set(SECRET_FETCH_LOCK, os.getpid(), nx=True, ex=SECRET_FETCH_LOCK_SECONDS):
        raise SecretUnavailable("The webhook secret is being fetched from Replicate.")
    try:
        secret = fetch()
    except Exception as exc:
        redis.set(SECRET_FAILED_KEY, type(exc).__name__, ex=SECRET_RETRY_SECONDS)
        log.warning("Could not fetch the webhook secret from Replicate (%s); asking again in %d s", exc,
                    SECRET_RETRY_SECONDS)
        raise SecretUnavailable("Replicate did not give the webhook secret.") from exc
    else:
        redis.set(SECRET_KEY, secret, ex=SECRET_TTL)
        return secret
    finally:
        redis.delete(SECRET_FETCH_LOCK)


def forget_secret(redis: Redis) -> None:
    """Drop the cached secret and any remembered failure (tests; or after rotating the secret)."""
    redis.delete(SECRET_KEY, SECRET_FAILED_KEY, SECRET_FETCH_LOCK)
