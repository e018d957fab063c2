"""What Tessera adds to a model's input, the same way in every area: the seed it picks when the user
left it blank (so every image can be made again), and a job's title made from the prompt."""
from __future__ import annotations

import random

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
