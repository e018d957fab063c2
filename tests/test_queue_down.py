"""A page that needs the job queue while Redis does not answer: a clear 503 that never tells the user to
start Tessera, and "restarting" while `tessera up` is bringing its private Redis back."""
from pathlib import Path

import pytest
from redis import Redis
from redis.backoff import NoBackoff
from redis.retry import Retry
from rq import Queue

from app.models import Job
from app.extensions import db
from app.redis_server import RESTARTING_MARKER


@pytest.fixture
def redis_gone(app, tmp_path):
    """The app's Redis is a private one whose socket nothing answers on (killed, not yet back)."""
    socket = tmp_path / "run" / "redis.sock"
    socket.parent.mkdir()
    app.config["REDIS_URL"] = f"unix://{socket}"
    app.redis = Redis(unix_socket_path=str(socket), retry=Retry(NoBackoff(), 0))
    app.task_queue = app.interactive_queue = Queue("gone", connection=app.redis)
    return socket.parent


def _generate(client):
    return client.post("/generate", headers={"HX-Request": "true"},
                       data={"model": "black-forest-labs/flux-schnell", "prompt": "a red fox"})


def test_while_tessera_up_restarts_redis_the_page_says_so(client, redis_gone):
    (redis_gone / RESTARTING_MARKER).touch()
    response = _generate(client)
    page = response.get_data(as_text=True)
    assert response.status_code == 503
    assert "Tessera is restarting it" in page and "try again in a few seconds" in page
    assert "tessera up" not in page
    assert db.session.scalar(db.select(Job.error)).startswith("The job queue (Redis) stopped")


def test_when_redis_does_not_answer_the_page_says_try_again_not_start_tessera(client, redis_gone):
    response = _generate(client)
    page = response.get_data(as_text=True)
    assert response.status_code == 503
    assert "not answering" in page and "Try again in a few seconds" in page and "tessera up" not in page
