"""POST /webhooks/replicate: Replicate reports a prediction's progress; signed, fresh, handled once."""
from __future__ import annotations

import json
import logging

from flask import abort, current_app, request
from redis.exceptions import RedisError

from app.jobs.predictions import WEBHOOK_PATH, record_pushed_progress, store_pushed_prediction
from app.replicate.catalog import client_from_config
from app.replicate.client import ReplicateError
from app.webhooks import bp
from app.webhooks.signature import SignatureError, check_envelope, verify
from app.webhooks.store import SecretUnavailable, cached_secret, claim_delivery, release_delivery

log = logging.getLogger(__name__)

# A prediction object with its logs; anything larger is not a delivery worth reading.
MAX_DELIVERY_BYTES = 4 * 1024 * 1024


def _secret() -> str:
    configured = current_app.config["REPLICATE_WEBHOOK_SECRET"]
    if configured:
        return configured

    def fetch() -> str:
        with client_from_config() as client:
            # Inside a web request: one retry, not the worker's patient back-off (a failure is cached).
            client.max_retries = 1
            return client.get_webhook_secret()

    return cached_secret(current_app.redis, fetch)


@bp.post(WEBHOOK_PATH)
def replicate():
    if not current_app.config["PUBLIC_URL"]:
        abort(404)  # webhooks are off: predictions are created without one
    request.max_content_length = MAX_DELIVERY_BYTES
    body = request.get_data(cache=False)
    headers = request.headers
    try:
        check_envelope(headers.get("webhook-id"), headers.get("webhook-timestamp"), headers.get("webhook-signature"))
        verify(_secret(), headers.get("webhook-id"), headers.get("webhook-timestamp"),
               headers.get("webhook-signature"), body)
    except SignatureError as exc:
        log.warning("Refused a webhook delivery from %s: %s", request.remote_addr, exc)
        return {"error": str(exc)}, 401
    except (SecretUnavailable, ReplicateError, RedisError) as exc:
        # Replicate retries a failed delivery, and the worker polls meanwhile.
        log.warning("Cannot check webhook signatures now: %s", exc)
        return {"error": "The webhook secret is not available right now."}, 503, {"Retry-After": "60"}
    try:
        data = json.loads(body)
    except ValueError:
        data = None
    if not isinstance(data, dict) or not isinstance(data.get("id"), str) or not data["id"]:
        return {"error": "The body is not a prediction."}, 400
    webhook_id = headers["webhook-id"]
    if not claim_delivery(current_app.redis, webhook_id):
        return {"status": "already handled"}
    try:
        store_pushed_prediction(current_app.redis, data)
        record_pushed_progress(data)
    except BaseException:
        release_delivery(current_app.redis, webhook_id)
        raise
    return {"status": "ok"}
