"""Two accepts of one generation at the same moment (with "accept anyway"): exactly one is pasted,
the other is told why. Concurrent requests on threads, each with its own database session."""
import io
import threading

import numpy as np

from app.canvas.models import CanvasRequest, CanvasVariation
from app.canvas.staging import tile_store
from app.extensions import db
from tests.canvas_helpers import make_canvas, noise, paint, png


def test_exactly_one_of_two_simultaneous_accepts_wins(app, client, user, run_jobs):
    canvas = make_canvas(user)
    paint(canvas, 0, 0, noise(512, 512, seed=1, alpha=255))
    mask = np.zeros((512, 512), np.uint8)
    mask[100:300, 100:300] = 255
    rounds = 6
    for round_number in range(rounds):
        form = {"model": "black-forest-labs/flux-fill-dev", "prompt": "a boat", "frame_x": 0, "frame_y": 0,
                "frame_w": 512, "frame_h": 512, "infill": "telea", "mask_blur": 4, "num_outputs": 2,
                "seed": round_number, "mask": (io.BytesIO(png(mask)), "mask.png")}
        assert client.post(f"/canvas/{canvas.id}/generate", data=form,
                           content_type="multipart/form-data").status_code == 200
    run_jobs()
    staged = client.get(f"/canvas/{canvas.id}/staging").get_json()["variations"]
    by_request = {}
    for variation in staged:
        by_request.setdefault(variation["request"], []).append(variation)
    assert len(by_request) == rounds

    head_before = tile_store().head(canvas.id)
    outcomes = []
    for first, second in by_request.values():
        barrier = threading.Barrier(2)
        answers = {}

        def accept(variation):
            # A client per thread (like two tabs); the session cookie is shared.
            with app.test_client() as other:
                with client.session_transaction() as source, other.session_transaction() as target:
                    target.update(source)
                barrier.wait()
                answers[variation["id"]] = other.post(variation["accept"], data={"force": "1"})

        threads = [threading.Thread(target=accept, args=(v,)) for v in (first, second)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        outcomes.append(sorted(response.status_code for response in answers.values()))
        lost = [response for response in answers.values() if response.status_code == 409]
        assert len(lost) == 1, [r.get_json() for r in answers.values()]
        body = lost[0].get_json()
        assert body.get("already_accepted") and "was accepted just before" in body["error"]

    assert outcomes == [[200, 409]] * rounds
    # One revision per generation, not two.
    assert tile_store().head(canvas.id) == head_before + rounds
    db.session.expire_all()
    requests = db.session.scalars(db.select(CanvasRequest)).all()
    for request in requests:
        accepted = [v for v in request.variations if v.status == CanvasVariation.ACCEPTED]
        assert len(accepted) == 1 and request.accepted_variation_id == accepted[0].id
