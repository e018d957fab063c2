"""Driving one Replicate prediction from inside a job: create once, poll, report, cancel.

When TESSERA_PUBLIC_URL is set, Replicate pushes each state change to /webhooks/replicate, which
keeps the newest state in Redis; the worker then reads that instead of asking Replicate, and polls
Replicate itself only now and then, in case a delivery was lost.
"""
from __future__ import annotations

import json
import time

from flask import current_app
from redis import Redis
from redis.exceptions import RedisError

from app.extensions import db
from app.jobs.runner import JobCanceled, JobFailed, JobRun
from app.models import Job
from app.replicate.client import NotFoundError, Prediction, ReplicateClient

# Seconds between polls: the first wait, growing 1.3× up to the longest. The app config's
# REPLICATE_POLL_SECONDS = (first, longest) overrides them (the test suite polls its fake quickly).
POLL_FIRST, POLL_MAX = 0.5, 2.0
# Share of the progress bar each phase takes: booting, running the model, downloading outputs.
BOOT_SHARE, RUN_SHARE = 5, 85

WEBHOOK_PATH = "/webhooks/replicate"
WEBHOOK_EVENTS = ["start", "output", "logs", "completed"]
# With webhooks the worker looks at the pushed state every second and asks Replicate itself only
# every FALLBACK_POLL_EVERY looks (about every 15 s) instead of every 0.5–2 s.
PUSHED_CHECK_INTERVAL, FALLBACK_POLL_EVERY = 1.0, 15

PUSHED_KEY = "tessera:prediction:{}"
PUSHED_TTL = 24 * 3600  # outlives any job (an hour at most) and its retries
_STATUS_RANK = {"starting": 0, "processing": 1, "succeeded": 2, "failed": 2, "canceled": 2}
_LOGS_RANGE = 10**9
# Deliveries can arrive out of order: a state is kept only when it is not older than the stored one.
_STORE_IF_NOT_OLDER = """
local stored = redis.call('HGET', KEYS[1], 'rank')
if stored and tonumber(stored) > tonumber(ARGV[1]) then return 0 end
redis.call('HSET', KEYS[1], 'rank', ARGV[1], 'body', ARGV[2])
redis.call('EXPIRE', KEYS[1], ARGV[3])
return 1
"""


def webhook_url(config) -> str | None:
    return config["PUBLIC_URL"] + WEBHOOK_PATH if config["PUBLIC_URL"] else None


def follow_prediction(client: ReplicateClient, run: JobRun, model_ref: str, model_input: dict,
                      *, sleep=time.sleep) -> Prediction:
    """Return the finished prediction; reuse the job's stored prediction when it can still succeed."""
    webhook = webhook_url(current_app.config)
    prediction = _resume(client, run.job.prediction_id)
    if prediction is None:
        run.check_canceled()
        run.progress(1, "Sending to Replicate")
        prediction = client.create_prediction(model_ref, model_input, webhook=webhook,
                                              webhook_events_filter=WEBHOOK_EVENTS if webhook else None)
        run.set_prediction(prediction.id)
    interval, longest = current_app.config.get("REPLICATE_POLL_SECONDS", (POLL_FIRST, POLL_MAX))
    looks = 0
    # A prediction an earlier attempt already saw finish had its model time counted then.
    count_predict_time = not prediction.done
    while not prediction.done:
        if run.cancel_requested():
            client.cancel_prediction(prediction.id)
            raise JobCanceled()
        run.progress(*_progress_of(prediction))
        if webhook:
            sleep(PUSHED_CHECK_INTERVAL)
            looks += 1
            prediction = _newer(prediction, _pushed_or_none(current_app.redis, prediction.id))
            ask_replicate = not prediction.done and looks % FALLBACK_POLL_EVERY == 0
        else:
            sleep(interval)
            interval = min(interval * 1.3, longest)
            ask_replicate = True
        if ask_replicate:
            prediction = client.get_prediction(prediction.id)
    if count_predict_time:
        run.add_predict_time(prediction.predict_time)  # billed for failed and canceled ones too
    if prediction.status == "canceled":
        raise JobCanceled()
    if prediction.status == "failed":
        raise JobFailed(f"The model failed on Replicate: {prediction.error or 'no reason given'}")
    run.progress(BOOT_SHARE + RUN_SHARE, "Downloading")
    return prediction


def _resume(client: ReplicateClient, prediction_id: str | None) -> Prediction | None:
    if not prediction_id:
        return None
    try:
        prediction = client.get_prediction(prediction_id)
    except NotFoundError:
        return None
    # A failed or expired prediction cannot give results; only then is a new one paid for.
    if prediction.status in ("failed", "canceled") or prediction.data_removed:
        return None
    return prediction


def _progress_of(prediction: Prediction) -> tuple[int, str]:
    """(percent for the bar, the one line the page shows) of an unfinished prediction: "Starting on
    Replicate (cold boot)" while Replicate boots the model (status ``starting``, which lasts long only
    when a new instance starts), "Step 12 of 25" from the tqdm counter in its logs, else the bare
    percentage or "Running on Replicate"."""
    if prediction.status == "starting":
        return BOOT_SHARE // 2, "Starting on Replicate (cold boot)"
    steps = prediction.steps
    if steps is not None:
        step, total = steps
        return BOOT_SHARE + step * RUN_SHARE // total, f"Step {step} of {total}"
    percent = prediction.progress
    if percent is None:
        return BOOT_SHARE, "Running on Replicate"
    return BOOT_SHARE + percent * RUN_SHARE // 100, f"Running on Replicate: {percent}%"


# --- states pushed by webhooks ----------------------------------------------------------------


def prediction_rank(data: dict) -> int:
    """Later states rank higher; while processing, longer logs are newer (logs only grow)."""
    logs = data.get("logs") or ""
    return _STATUS_RANK.get(str(data.get("status")), 0) * _LOGS_RANGE + min(len(logs), _LOGS_RANGE - 1)


def store_pushed_prediction(redis: Redis, data: dict) -> bool:
    """Keep a delivered prediction for the worker following it; False when a newer state is already kept."""
    return bool(redis.eval(_STORE_IF_NOT_OLDER, 1, PUSHED_KEY.format(data["id"]), prediction_rank(data),
                           json.dumps(data), PUSHED_TTL))


def pushed_prediction(redis: Redis, prediction_id: str) -> dict | None:
    body = redis.hget(PUSHED_KEY.format(prediction_id), "body")
    return json.loads(body) if body else None


def record_pushed_progress(data: dict) -> None:
    """Show a delivered state on the prediction's running job at once; only the worker ends the job."""
    prediction = Prediction.from_api(data)
    if prediction.done:
        return
    percent, message = _progress_of(prediction)
    db.session.execute(
        db.update(Job)
        .where(Job.prediction_id == prediction.id, Job.status == Job.RUNNING, Job.progress <= percent)
        .values(progress=percent, message=message)
    )
    db.session.commit()


def _pushed_or_none(redis: Redis, prediction_id: str) -> dict | None:
    try:
        return pushed_prediction(redis, prediction_id)
    except RedisError:
        return None  # the fallback polling still finds the state


def _newer(current: Prediction, pushed: dict | None) -> Prediction:
    if pushed is not None and prediction_rank(pushed) > prediction_rank(current.raw):
        return Prediction.from_api(pushed)
    return current
