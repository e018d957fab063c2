"""Replicate's webhook signatures: base64 HMAC-SHA256 of "{id}.{timestamp}.{body}" under the secret's key."""
from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import time

# Deliveries older (or newer) than this are refused, so a captured delivery cannot be replayed later.
TOLERANCE_SECONDS = 5 * 60


class SignatureError(ValueError):
    """The delivery is not provably from Replicate, or it is stale."""


def _key(secret: str) -> bytes:
    try:
        return base64.b64decode(secret.removeprefix("whsec_"), validate=True)
    except binascii.Error:
        message = "The Replicate webhook secret is not a whsec_… value: check REPLICATE_WEBHOOK_SECRET."
        raise ValueError(message) from None


def sign(secret: str, webhook_id: str, timestamp: str, body: bytes) -> str:
    """The webhook-signature header value Replicate sends for this delivery."""
    digest = hmac.new(_key(secret), f"{webhook_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode("ascii")


def check_envelope(webhook_id: str | None, timestamp: str | None, signatures: str | None, *,
                   now: float | None = None, tolerance: int = TOLERANCE_SECONDS) -> None:
    """The checks that need no secret: the three headers are there and the timestamp is fresh.
    Run first, so a delivery that cannot be genuine never makes Tessera look up the secret."""
    if not webhook_id or not timestamp or not signatures or not signatures.strip():
        raise SignatureError("The webhook-id, webhook-timestamp and webhook-signature headers are required.")
    try:
        sent_at = int(timestamp)
    except ValueError:
        raise SignatureError("The webhook-timestamp is not a number of seconds.") from None
    if abs((time.time() if now is None else now) - sent_at) > tolerance:
        raise SignatureError("The webhook-timestamp is too far from now; stale deliveries are refused.")
    if not any(candidate.startswith("v1,") for candidate in signatures.split()):
        raise SignatureError("No v1 webhook signature was sent.")


def verify(secret: str, webhook_id: str | None, timestamp: str | None, signatures: str | None, body: bytes,
           *, now: float | None = None, tolerance: int = TOLERANCE_SECONDS) -> None:
    """Return when one of the space-separated `v1,<base64>` signatures matches; else raise SignatureError."""
    check_envelope(webhook_id, timestamp, signatures, now=now, tolerance=tolerance)
    expected = sign(secret, webhook_id, timestamp, body).encode("ascii")
    for candidate in signatures.split():
        # Compare every candidate in constant time; a mismatch must not reveal how much of it matched.
        if hmac.compare_digest(candidate.encode("ascii", "replace"), expected):
            return
    raise SignatureError("No webhook signature matches.")
