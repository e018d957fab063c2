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


def test_the_health_fixes_go_back_only_to_a_page_of_this_site(client, run_jobs, app):
    from tests.datasets_helpers import make_folder, open_dataset

    dataset = open_dataset(client, run_jobs, make_folder(app))
    home = f"/datasets/{dataset.id}/health"
    for target in HOSTILE:
        for path, data in ((f"/datasets/{dataset.id}/health/fix", {"problem": "none such"}),
                           (f"/datasets/{dataset.id}/health/merge", {}),
                           (f"/datasets/{dataset.id}/exclude", {})):
            response = client.post(path, data={**data, "next": target})
            assert response.status_code == 303 and response.headers["Location"] == home, (path, target)
    kept = client.post(f"/datasets/{dataset.id}/exclude", data={"next": f"/datasets/{dataset.id}?excluded=1"})
    assert kept.headers["Location"] == f"/datasets/{dataset.id}?excluded=1"


def test_every_view_that_reads_a_return_address_checks_it_with_the_one_helper():
    """A new "next"/"back" parameter read anywhere in app/ must go through app.redirects."""
    import re
    from pathlib import Path

    import app as package

    root = Path(package.__file__).parent
    reading = re.compile(r"""request\.(?:form|args|values)\.get\(\s*["'](?:next|back|return_to|redirect_to|url)["']""")
    unchecked = [path.relative_to(root).as_posix() for path in root.rglob("*.py")
                 if reading.search(path.read_text()) and "safe_redirect_target" not in path.read_text()]
    assert unchecked == []
