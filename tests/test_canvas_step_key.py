"""A mask step pushed again under its key (the page never got the first answer) is not a second step:
the push is idempotent, also when the resend carries the history version from before the first."""
import io
import zlib

import numpy as np

from app.canvas.models import CanvasStep
from app.extensions import db
from tests.canvas_helpers import make_canvas


def push(client, canvas, row, *, version, key=None):
    """A 20×100 stroke at `row`, as canvas.js pushes it (zlib of before ‖ after)."""
    before, after = np.zeros((20, 100), np.uint8), np.full((20, 100), 255, np.uint8)
    form = {"label": "brush stroke", "x": 0, "y": row, "w": 100, "h": 20, "version": version,
            "alpha": (io.BytesIO(zlib.compress(before.tobytes() + after.tobytes())), "alpha.zlib")}
    if key is not None:
        form["key"] = key
    return client.post(f"/canvas/{canvas.id}/history/mask", data=form, content_type="multipart/form-data")


def steps(canvas):
    return db.session.scalars(db.select(CanvasStep).where(CanvasStep.canvas_id == canvas.id)).all()


def test_a_push_sent_again_under_its_key_answers_the_step_it_made(client, user):
    canvas = make_canvas(user)
    first = push(client, canvas, 0, version=0, key="a1b2")
    assert first.status_code == 200 and first.get_json()["history"]["version"] == 1
    again = push(client, canvas, 0, version=0, key="a1b2")  # the page's version from before the first
    answer = again.get_json()
    assert again.status_code == 200 and "stale_history" not in answer
    assert answer["step"] == first.get_json()["step"] and answer["history"]["version"] == 1
    assert len(steps(canvas)) == 1
    # Another key is another step; without a key a stale version is refused as before.
    assert push(client, canvas, 50, version=1, key="c3d4").get_json()["history"]["version"] == 2
    assert push(client, canvas, 90, version=1).get_json()["stale_history"] is True
    assert len(steps(canvas)) == 2


def test_a_key_is_a_short_plain_name(client, user):
    canvas = make_canvas(user)
    for bad in ("x" * 65, "a b", "../x", "ä"):
        response = push(client, canvas, 0, version=0, key=bad)
        assert response.status_code == 422 and "key" in response.get_json()["error"]
    assert steps(canvas) == []
