"""What Tessera adds to a model's input, the same way in every area: the seed it picks when the user
left it blank (so every image can be made again), a job's title made from the prompt, and the
short-lived place secret inputs wait in between the form and the job that sends them."""
from __future__ import annotations

import json
import random
import secrets

from app.replicate.schema import Field, field_by_name

# The largest seed every current model accepts (a signed 32-bit integer).
SEED_MAX = 2**31 - 1
TITLE_PROMPT_CHARS = 60


def random_seed() -> int:
    """A fresh seed in [0, SEED_MAX]."""
    return random.randint(0, SEED_MAX)


def with_seed(fields: list[Field], values: dict) -> dict:
    """`values` (changed in place and returned) with a random ``seed`` when the model takes a seed
    input and the user gave none; a model without one is left alone."""
    if field_by_name(fields, "seed") is not None and values.get("seed") is None:
        values["seed"] = random_seed()
    return values


def prompt_title(prompt, fallback: str) -> str:
    """A job title: the prompt on one line, cut to 60 characters with "…", or `fallback` (usually the
    model ref) when the prompt is empty."""
    prompt = " ".join(str(prompt).split())
    return (prompt[:TITLE_PROMPT_CHARS] + "…" if len(prompt) > TITLE_PROMPT_CHARS else prompt) or fallback


# ---- secret inputs: to Replicate, never into a row, a log, a PNG or the gallery ----------------

SECRETS_KEY = "tessera:secret-input:{}"
# Long enough for a queued job to start; a job retried later asks the user to enter them again.
SECRETS_TTL = 6 * 3600
SECRETS_GONE = ("This generation used secret inputs ({names}), which Tessera does not keep; start it again "
                "from the form and enter them again.")


def stash_secrets(redis, secrets: dict) -> str | None:
    """Keep secret input values in Redis (memory, expiring) under a fresh random key for the job that
    sends them; returns the key to put in the job's params (None when there are none)."""
    if not secrets:
        return None
    key = secrets_token()
    redis.set(SECRETS_KEY.format(key), json.dumps(secrets), ex=SECRETS_TTL)
    return key


def stashed_secrets(redis, key: str | None) -> dict | None:
    """The stashed secrets, or None when they expired or were never stashed."""
    if not key:
        return {}
    raw = redis.get(SECRETS_KEY.format(key))
    return json.loads(raw) if raw else None


def forget_secrets(redis, key: str | None) -> None:
    if key:
        redis.delete(SECRETS_KEY.format(key))


def secrets_token() -> str:
    return secrets.token_urlsafe(24)
