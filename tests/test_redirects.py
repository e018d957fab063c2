"""Every redirect target that comes from a user stays on this site, read as a browser reads it."""
import pytest

from app.redirects import local_target, safe_redirect_target
from tests.app_helpers import TEST_PASSWORD
from tests.redirect_helpers import HOSTILE, LOCAL


@pytest.mark.parametrize("target", HOSTILE)
def test_hostile_targets_are_refused(target):
    assert local_target(target) is None
    assert safe_redirect_target(target, "/home") == "/home"


@pytest.mark.parametrize("target", LOCAL)
def test_same_site_paths_are_kept(target):
    assert local_target(target) == target


def test_non_strings_are_refused():
    assert local_target(None) is None and local_target(["/x"]) is None and local_target(b"/x") is None


@pytest.mark.parametrize("target", HOSTILE)
def test_login_never_sends_anyone_off_site(app, user, target):
    client = app.test_client()
    response = client.post("/login", query_string={"next": target},
                           data={"username": "ada", "password": TEST_PASSWORD})
    assert response.status_code == 302 and response.headers["Location"] == "/"
    # Already logged in: /login?next=… redirects at once, through the same check.
    again = client.get("/login", query_string={"next": target})
    assert again.status_code == 302 and again.headers["Location"] == "/"


def test_login_follows_a_same_site_next(app, user):
    response = app.test_client().post("/login", query_string={"next": "/datasets/3?tags=a%20b"},
                                      data={"username": "ada", "password": TEST_PASSWORD})
    assert response.headers["Location"] == "/datasets/3?tags=a%20b"


def test_undo_goes_back_only_to_a_page_of_this_site(client, run_jobs, app):
    from app.datasets.models import CaptionBatch
    from app.extensions import db
    from tests.datasets_helpers import make_folder, open_dataset

    dataset = open_dataset(client, run_jobs, make_folder(app))
    home = f"/datasets/{dataset.id}"
    for number, target in enumerate(HOSTILE + ["/datasets/?from=history"]):
        client.post(f"{home}/bulk", data={"action": "rename", "old": f"smile{number - 1}" if number else "smile",
                                          "new": f"smile{number}"})
        batch = db.session.scalars(db.select(CaptionBatch).order_by(CaptionBatch.created_at.desc())).first()
        response = client.post(f"{home}/history/{batch.id}/undo", data={"next": target})
        assert response.status_code == 303
        expected = target if target.startswith("/datasets/?") else home
        assert response.headers["Location"] == expected, target
        # Undo the undo (a redo), so the next rename finds its tag.
        redo = db.session.scalar(db.select(CaptionBatch).where(CaptionBatch.undo_of == batch.id))
        client.post(f"{home}/history/{redo.id}/undo")
