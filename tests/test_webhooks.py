"""Replicate webhooks: signed, fresh, handled once, out-of-order safe; the worker uses what they push."""
import json
import time
import uuid

import pytest
from PIL import Image

from app.extensions import db
from app.gallery import save_generation
from app.jobs.predictions import FALLBACK_POLL_EVERY, follow_prediction, pushed_prediction, store_pushed_prediction
from app.generate.tasks import run_generation
from app.jobs.runner import enqueue_job, job_run
from app.models import Job
from app.replicate.catalog import client_from_config
from app.webhooks.signature import SignatureError, sign, verify
from app.webhooks.store import SECRET_FAILED_KEY, SECRET_FETCH_LOCK, SECRET_KEY, forget_secret
from tests.fake_replicate import WEBHOOK_SECRET, png_bytes

FLUX = "black-forest-labs/flux-schnell"
PUBLIC_URL = "https://tessera.example.com"


@pytest.fixture
def webhooks_on(app):
    app.config.update(PUBLIC_URL=PUBLIC_URL, REPLICATE_WEBHOOK_SECRET=WEBHOOK_SECRET,
                      WTF_CSRF_ENABLED=True)  # the endpoint must work without a token
    forget_secret(app.redis)
    return app


@pytest.fixture
def running_job(app, user):
    job = enqueue_job(run_generation, user_id=user.id, kind="generate.image", title="t",
                      params={"model": FLUX, "input": {"prompt": "p"}})
    job.status, job.prediction_id, job.progress, job.message = Job.RUNNING, uuid.uuid4().hex[:26], 5, "Running"
    db.session.commit()
    return job


def prediction(prediction_id, status="processing", percent=None, **extra):
    logs = f"Using seed: 1\n{percent:3d}%|#####     | {percent}/100 [00:01<00:01, 9.8it/s]\n" if percent else ""
    return {"id": prediction_id, "status": status, "logs": logs, "output": None, "error": None, "input": {},
            **extra}


def deliver(app, data, *, secret=WEBHOOK_SECRET, webhook_id=None, timestamp=None, body=None, signature=None):
    """POST a delivery as Replicate does: anonymous, no CSRF token, signed headers."""
    body = json.dumps(data).encode() if body is None else body
    webhook_id = webhook_id or f"msg_{uuid.uuid4().hex}"
    timestamp = str(int(time.time())) if timestamp is None else str(timestamp)
    headers = {"webhook-id": webhook_id, "webhook-timestamp": timestamp,
               "webhook-signature": signature or sign(secret, webhook_id, timestamp, body)}
    return app.test_client().post("/webhooks/replicate", data=body, headers=headers,
                                  content_type="application/json")


def job_state(job):
    db.session.expire_all()
    row = db.session.get(Job, job.id)
    return row.status, row.progress, row.message


def test_the_reference_test_vector_verifies():
    secret, webhook_id = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "msg_p5jXN8AQM9LWM0D4loKWxJek"
    timestamp = "1614265330"
    body = b'{"test": 2432232314}'
    expected = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
    assert sign(secret, webhook_id, timestamp, body) == expected
    verify(secret, webhook_id, timestamp, f"v1,bm90IGl0 {expected}", body, now=1614265330 + 299)
    with pytest.raises(SignatureError, match="too far"):
        verify(secret, webhook_id, timestamp, expected, body, now=1614265330 + 301)
    with pytest.raises(SignatureError, match="matches"):
        verify(secret, webhook_id, timestamp, expected, b'{"test": 2432232315}', now=1614265330)


def test_a_signed_delivery_moves_the_running_jobs_progress_and_is_kept_for_the_worker(webhooks_on, running_job):
    response = deliver(webhooks_on, prediction(running_job.prediction_id, percent=60))
    assert response.status_code == 200
    status, progress, message = job_state(running_job)
    assert (status, message) == (Job.RUNNING, "Step 60 of 100") and progress == 5 + 60 * 85 // 100
    assert pushed_prediction(webhooks_on.redis, running_job.prediction_id)["logs"].count("60%") == 1


@pytest.mark.parametrize("forgery", ["wrong secret", "tampered body", "stale", "from the future", "no signature",
                                     "garbage signature"])
def test_forged_or_stale_deliveries_are_refused_and_change_nothing(webhooks_on, running_job, forgery):
    data = prediction(running_job.prediction_id, percent=90)
    body = json.dumps(data).encode()
    now = int(time.time())
    webhook_id = "msg_forged"
    options = {
        "wrong secret": {"secret": "whsec_" + "QUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUE="},
        "tampered body": {"body": body.replace(b"90%", b"99%"), "signature": sign(WEBHOOK_SECRET, webhook_id,
                                                                                   str(now), body)},
        "stale": {"timestamp": now - 301},
        "from the future": {"timestamp": now + 301},
        "no signature": {"signature": " "},
        "garbage signature": {"signature": "v1,\u00e9\u00e9 v0,x"},
    }[forgery]
    before = job_state(running_job)
    response = deliver(webhooks_on, data, webhook_id=webhook_id, **options)
    assert response.status_code == 401
    assert job_state(running_job) == before
    assert pushed_prediction(webhooks_on.redis, running_job.prediction_id) is None
    # A refused delivery is not remembered: Replicate's genuine one with that id still counts.
    assert deliver(webhooks_on, data, webhook_id=webhook_id).status_code == 200


def test_a_repeated_delivery_is_harmless(webhooks_on, running_job):
    first = prediction(running_job.prediction_id, percent=40)
    assert deliver(webhooks_on, first, webhook_id="msg_once").status_code == 200
    # The same id again (even were its body different) is acknowledged and ignored.
    again = deliver(webhooks_on, prediction(running_job.prediction_id, percent=95), webhook_id="msg_once")
    assert again.status_code == 200 and again.get_json() == {"status": "already handled"}
    assert job_state(running_job)[2] == "Step 40 of 100"
    assert "40%" in pushed_prediction(webhooks_on.redis, running_job.prediction_id)["logs"]


def test_deliveries_arriving_out_of_order_never_move_a_job_backwards(webhooks_on, running_job):
    prediction_id = running_job.prediction_id
    deliver(webhooks_on, prediction(prediction_id, percent=80))
    deliver(webhooks_on, prediction(prediction_id, percent=20))
    assert job_state(running_job)[2] == "Step 80 of 100"
    deliver(webhooks_on, prediction(prediction_id, status="succeeded", percent=100, output=["https://x/y.png"]))
    deliver(webhooks_on, prediction(prediction_id, status="starting"))
    assert pushed_prediction(webhooks_on.redis, prediction_id)["status"] == "succeeded"
    assert job_state(running_job)[0] == Job.RUNNING  # the worker downloads the outputs and ends the job


def test_a_delivery_for_an_ended_job_does_not_touch_it(webhooks_on, running_job):
    running_job.status, running_job.message = Job.CANCELED, "Canceled"
    db.session.commit()
    assert deliver(webhooks_on, prediction(running_job.prediction_id, percent=50)).status_code == 200
    assert job_state(running_job) == (Job.CANCELED, 5, "Canceled")


def test_bodies_that_are_not_predictions_or_too_large_are_refused(webhooks_on, running_job):
    assert deliver(webhooks_on, None, body=b"not json").status_code == 400
    assert deliver(webhooks_on, None, body=b'["a list"]').status_code == 400
    huge = json.dumps(prediction(running_job.prediction_id, logs="x" * (5 * 1024 * 1024))).encode()
    assert deliver(webhooks_on, None, body=huge).status_code == 413
    assert pushed_prediction(webhooks_on.redis, running_job.prediction_id) is None
    assert job_state(running_job)[1] == 5


def test_without_a_public_url_the_endpoint_does_not_exist(app, running_job):
    app.config["REPLICATE_WEBHOOK_SECRET"] = WEBHOOK_SECRET
    assert deliver(app, prediction(running_job.prediction_id, percent=50)).status_code == 404
    assert pushed_prediction(app.redis, running_job.prediction_id) is None


def test_the_secret_is_fetched_from_replicate_once_and_shared(webhooks_on, running_job, fake_replicate):
    webhooks_on.config["REPLICATE_WEBHOOK_SECRET"] = ""
    for percent in (30, 50):
        assert deliver(webhooks_on, prediction(running_job.prediction_id, percent=percent)).status_code == 200
    assert len(fake_replicate.requests_to("GET", "/v1/webhooks/default/secret")) == 1
    assert webhooks_on.redis.get(SECRET_KEY).decode() == WEBHOOK_SECRET


def test_when_replicate_cannot_give_the_secret_the_delivery_is_left_for_a_retry(webhooks_on, running_job,
                                                                              fake_replicate):
    webhooks_on.config["REPLICATE_WEBHOOK_SECRET"] = ""
    fake_replicate.fail_next(401, path_prefix="/v1/webhooks/")
    data = prediction(running_job.prediction_id, percent=50)
    assert deliver(webhooks_on, data, webhook_id="msg_retried").status_code == 503
    assert pushed_prediction(webhooks_on.redis, running_job.prediction_id) is None
    webhooks_on.redis.delete(SECRET_FAILED_KEY)  # as if the minute of remembered failure had passed
    assert deliver(webhooks_on, data, webhook_id="msg_retried").status_code == 200  # Replicate's retry
    assert len(fake_replicate.requests_to("GET", "/v1/webhooks/default/secret")) == 2


def _forged(app, running_job, count):
    """`count` anonymous deliveries with fresh timestamps and made-up signatures."""
    data = prediction(running_job.prediction_id, percent=70)
    return [deliver(app, data, signature="v1,bm90IGEgc2lnbmF0dXJlIGF0IGFsbA==").status_code for _ in range(count)]


def test_unauthenticated_posts_never_make_tessera_ask_replicate_for_the_secret_again(webhooks_on, running_job,
                                                                                      fake_replicate):
    webhooks_on.config["REPLICATE_WEBHOOK_SECRET"] = ""
    secret_requests = lambda: len(fake_replicate.requests_to("GET", "/v1/webhooks/default/secret"))  # noqa: E731
    # Replicate is down: the first forged delivery costs one fetch (with its one retry); the next 49 none.
    fake_replicate.fail_next(503, times=1000, path_prefix="/v1/webhooks/")
    assert set(_forged(webhooks_on, running_job, 50)) == {503}
    assert secret_requests() == 2
    # Replicate is back and the remembered failure has expired: one fetch, then the secret is cached.
    fake_replicate.reset()
    webhooks_on.redis.delete(SECRET_FAILED_KEY)
    assert set(_forged(webhooks_on, running_job, 50)) == {401}
    assert secret_requests() == 1
    assert deliver(webhooks_on, prediction(running_job.prediction_id, percent=60)).status_code == 200
    assert secret_requests() == 1
    assert job_state(running_job)[2] == "Step 60 of 100"


@pytest.mark.parametrize("headers", [{}, {"webhook-id": "msg_1"}, {"webhook-id": "msg_1", "webhook-timestamp": "1"},
                                     {"webhook-id": "msg_1", "webhook-timestamp": "now", "webhook-signature": "v1,x"},
                                     {"webhook-id": "msg_1", "webhook-timestamp": "{now}", "webhook-signature": "x"}])
def test_deliveries_that_cannot_be_genuine_are_refused_before_any_secret_is_looked_up(webhooks_on, fake_replicate,
                                                                                       headers):
    webhooks_on.config["REPLICATE_WEBHOOK_SECRET"] = ""
    headers = {name: value.replace("{now}", str(int(time.time()))) for name, value in headers.items()}
    for _ in range(20):
        response = webhooks_on.test_client().post("/webhooks/replicate", data=b"{}", headers=headers,
                                                  content_type="application/json")
        assert response.status_code == 401
    assert fake_replicate.requests_to("GET", "/v1/webhooks/") == []
    assert webhooks_on.redis.get(SECRET_KEY) is None


def test_while_another_process_fetches_the_secret_deliveries_wait_for_replicates_retry(webhooks_on, running_job,
                                                                                       fake_replicate):
    webhooks_on.config["REPLICATE_WEBHOOK_SECRET"] = ""
    webhooks_on.redis.set(SECRET_FETCH_LOCK, 1, ex=30)
    response = deliver(webhooks_on, prediction(running_job.prediction_id, percent=50))
    assert response.status_code == 503 and response.headers["Retry-After"] == "60"
    assert fake_replicate.requests_to("GET", "/v1/webhooks/") == []


# --- the worker side -------------------------------------------------------------------------


def _generation_job(user):
    return enqueue_job(run_generation, user_id=user.id, kind="generate.image", title="t",
                       params={"model": FLUX, "input": {"prompt": "p"}})


def test_with_webhooks_the_worker_follows_pushed_states_without_asking_replicate(webhooks_on, user, fake_replicate):
    fake_replicate.polls_per_state = 1000  # only the pushed states can finish it
    job = _generation_job(user)
    output = fake_replicate.publish("pushed-0.png", png_bytes(Image.new("RGB", (8, 8), (1, 2, 3))), "image/png")
    looks = []

    def replicate_pushes_while_the_worker_waits(_seconds):
        looks.append(_seconds)
        prediction_id = db.session.get(Job, job.id).prediction_id
        if len(looks) == 1:
            assert deliver(webhooks_on, prediction(prediction_id, percent=50)).status_code == 200
        elif len(looks) == 2:
            done = prediction(prediction_id, status="succeeded", percent=100, output=[output])
            assert deliver(webhooks_on, done).status_code == 200

    with job_run(job.id) as run, client_from_config() as replicate:
        finished = follow_prediction(replicate, run, FLUX, {"prompt": "p"},
                                     sleep=replicate_pushes_while_the_worker_waits)
        saved = save_generation(replicate, finished.output[0], run.job, FLUX, {"prompt": "p"}, 0)
    created = fake_replicate.predictions[finished.id]
    assert created["webhook"] == PUBLIC_URL + "/webhooks/replicate"
    assert created["webhook_events_filter"] == ["start", "output", "logs", "completed"]
    assert len(looks) == 2 and fake_replicate.requests_to("GET", f"/v1/predictions/{finished.id}") == []
    with Image.open(webhooks_on.config["DATA_DIR"] / saved.path) as image:
        assert image.getpixel((0, 0)) == (1, 2, 3)
    assert db.session.get(Job, job.id).status == Job.SUCCEEDED


def test_with_webhooks_lost_the_worker_still_finishes_by_polling_slowly(webhooks_on, user, fake_replicate):
    job = _generation_job(user)
    looks = []
    with job_run(job.id) as run, client_from_config() as replicate:
        finished = follow_prediction(replicate, run, FLUX, {"prompt": "p"}, sleep=looks.append)
    # starting -> processing -> succeeded takes three polls; each comes after FALLBACK_POLL_EVERY looks.
    assert finished.status == "succeeded"
    assert len(fake_replicate.requests_to("GET", f"/v1/predictions/{finished.id}")) == 3
    assert len(looks) == 3 * FALLBACK_POLL_EVERY and set(looks) == {1.0}


def test_without_webhooks_predictions_are_created_without_one(app, user, fake_replicate):
    job = _generation_job(user)
    with job_run(job.id) as run, client_from_config() as replicate:
        finished = follow_prediction(replicate, run, FLUX, {"prompt": "p"}, sleep=lambda _s: None)
    assert "webhook" not in fake_replicate.predictions[finished.id]


def test_a_stored_state_is_replaced_only_by_a_newer_one(app):
    prediction_id = uuid.uuid4().hex
    assert store_pushed_prediction(app.redis, prediction(prediction_id, percent=30))
    assert store_pushed_prediction(app.redis, prediction(prediction_id, percent=30))  # a repeat is fine
    assert not store_pushed_prediction(app.redis, prediction(prediction_id, status="starting"))
    assert store_pushed_prediction(app.redis, prediction(prediction_id, status="failed", error="boom"))
    assert not store_pushed_prediction(app.redis, prediction(prediction_id, percent=99))
    assert pushed_prediction(app.redis, prediction_id)["error"] == "boom"
